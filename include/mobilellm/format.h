// The .mlm file format, versions 1 and 2: the single source of truth for what is on disk.
//
// One self-contained little-endian file holds a model: its configuration, every weight, and the
// tokenizer, so one file deploys. It is designed to be memory-mapped read-only and used in place:
// the loader binds tensor views into the mapping, so no weight is copied or converted at load.
//
//   offset 0               FileHeader (kHeaderSize = 512 bytes)
//   header.table_offset    TensorEntry[header.tensor_count] (kEntrySize = 128 bytes each)
//   entry.offset ...       tensor data, each at a multiple of header.alignment (>= 64)
//   header.file_size       end of file; nothing may follow
//
// The tokenizer is the tensor named "tokenizer" (dtype u8, rank 1): the serialized SentencePiece
// model proto, or a byte-level BPE blob (below), as ConfigRecord::tokenizer_kind says. Because the
// mmap base is page-aligned, file alignment is memory alignment.
//
// Compatibility. Readers check `version`: a file with a larger version than they know is refused
// ("made by a newer mobilellm"). The version is bumped only for incompatible changes. Compatible
// additions use the reserved fields, which writers zero and readers of older versions ignore;
// new dtypes and layouts are compatible additions (an old reader refuses the unknown dtype by
// name).
//
// Version 2 (MobileLLM-R1, HF Llama4ForCausalLM) gives meaning to ConfigRecord words that version
// 1 reserved: the architecture, QK-norm, NoPE temperature tuning, chunked attention, llama3 RoPE
// scaling and up to three more EOS ids, plus an optional "layer_kinds" tensor. A writer marks a
// file version 2 only when one of them is non-zero (ModelConfig::FormatVersion), so a MobileLLM v1
// model stays a version-1 file that older readers still load, and an older reader refuses an R1
// file instead of running it with the wrong attention. A reader ignores those words in a version-1
// file.
//
// Who checks what: the loader (src/model_file.cpp) checks every field documented "checked"; the
// converter writes them. `mobilellm info FILE --verify` also recomputes each tensor's CRC-32.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mobilellm::format {

inline constexpr char kMagic[4] = {'M', 'L', 'M', '1'};
inline constexpr uint32_t kVersion = 2;  // the newest version this build reads and writes
inline constexpr uint32_t kHeaderSize = 512;
inline constexpr uint32_t kEntrySize = 128;
inline constexpr uint32_t kMinAlignment = 64;
inline constexpr uint32_t kDefaultAlignment = 256;
inline constexpr uint32_t kMaxRank = 4;
inline constexpr uint32_t kMaxTensors = 1u << 20;  // tensor_count limit; a real model has < 40k
inline constexpr size_t kMaxNameLength = 47;       // + NUL in TensorEntry::name
inline constexpr const char* kTokenizerTensor = "tokenizer";
// Version 2, only with ConfigFlags::kLayerKinds: u8 [n_layers], one LayerKind bit set per logical
// layer. Absent means every layer is a plain RoPE layer with full causal attention.
inline constexpr const char* kLayerKindsTensor = "layer_kinds";
// Optional tensors, u8 bytes of rank 1 (the loader checks both when present; files without them
// load as before, and a reader older than them refuses them as unexpected tensors):
//   "chat_template"            the model's Jinja chat template, UTF-8, as tokenizer_config.json's
//                              `chat_template` (or `mobilellm-convert --chat-template FILE`);
//   "chat_template.bos_token"  the text the template sees as `bos_token` (absent: undefined);
//   "chat_template.eos_token"  the text the template sees as `eos_token` (absent: undefined).
// The token tensors are written only beside a template.
inline constexpr const char* kChatTemplateTensor = "chat_template";
inline constexpr const char* kBosTokenTensor = "chat_template.bos_token";
inline constexpr const char* kEosTokenTensor = "chat_template.eos_token";
inline constexpr const char* kOptionalByteTensors[] = {kChatTemplateTensor, kBosTokenTensor,
                                                       kEosTokenTensor};

// Element types. Values are stable on disk; gaps are room for the quantized types.
enum class DType : uint32_t {
  kF32 = 0,   // IEEE binary32
  kF16 = 1,   // IEEE binary16
  kBF16 = 2,  // bfloat16: the top 16 bits of a binary32
  kU8 = 3,    // raw bytes (the tokenizer)
  // Block-quantized weight matrices (16..31): rank 2, cols a multiple of kBlock, planar layout
  // (Layout::kRows) or in panels of 16 rows (Layout::kPanels).
  kQ8_0 = 16,  // int8, one f16 scale per block of 32: w = q * d
  kQ4_0 = 17,  // 4-bit, one f16 scale per block of 32: w = (q - 8) * d
};

// Quantized matrices [rows, cols], layout kRows, are stored planar, as two dense arrays:
//   quants  rows * cols bytes (q8_0) or rows * cols / 2 bytes (q4_0), row-major;
//   scales  rows * (cols / 32) f16 values, row-major, immediately after the quants.
// A q4_0 block of 32 takes 16 bytes: byte j holds element j in its low nibble and element j + 16
// in its high nibble (ggml's convention, so the two halves unpack with one shift and one mask).
inline constexpr int kBlock = 32;

// How a tensor's bytes are arranged (TensorEntry::layout).
enum class Layout : uint32_t {
  kRows = 0,    // row-major; quantized types planar, as above
  kPanels = 1,  // quantized matrices only, rows a multiple of kPanelRows: see below
};

// Panels: the converter stores every q8_0 / q4_0 matrix whose rows are a multiple of 16 this way,
// so the integer dot-product instructions of every ISA read it as stored. Rows are grouped in
// panels of 16, one after another; a panel is its nb = cols / 32 blocks in order, and block b is
//   scales  16 f16: block b of each of the 16 rows;
//   quants  block b of the 16 rows, interleaved 4 bytes at a time:
//     q8_0  512 bytes [g][l][i] = element 4g + i (g < 8) of row l (l < 16), as int8;
//     q4_0  256 bytes [c][l][i]: low nibble element 8c + i, high nibble element 8c + 4 + i
//           (c < 4), of row l, each q + 8 in [0, 15].
// So 64 bytes hold 4 consecutive elements of all 16 rows (q4_0: two such groups, one per nibble):
// one int32 lane per row for x86 vpdpbusd / maddubs, and four rows per 16-byte register for Arm
// SDOT by lane. A GEMV reads the matrix as one sequential stream (scales inline: a separate scale
// region read alongside halved the bandwidth hardware prefetchers delivered on Zen 4). A panel
// takes exactly the bytes of its 16 rows in the planar layout.
inline constexpr int kPanelRows = 16;

// How RoPE pairs the dimensions of a head. MobileLLM v1 was trained in HF code: kHalf.
enum class RopeStyle : uint32_t {
  kHalf = 0,         // HF rotate_half / GPT-NeoX: dimension i rotates with i + head_dim/2
  kInterleaved = 1,  // Meta / GGML "normal": dimension 2i rotates with 2i + 1
};

// Which decoder the file holds (ConfigRecord::arch, version 2; 0 in version 1).
enum class Arch : uint32_t {
  kMobileLlm = 0,   // MobileLLM v1 / HF Llama: the version-1 decoder
  kLlama4Text = 1,  // HF Llama4ForCausalLM (llama4_text), dense layers only: MobileLLM-R1
};

// ConfigRecord::flags bits (version 2).
enum ConfigFlags : uint32_t {
  kQkNorm = 1u << 0,                 // weightless RMS norm of q and k after RoPE, RoPE layers only
  kAttnTemperatureTuning = 1u << 1,  // NoPE layers scale q by log1p(floor((pos+1)/floor_scale))
                                     // * attn_scale + 1
  kLayerKinds = 1u << 2,             // the "layer_kinds" tensor exists
};

// A logical layer's kind: bits of the "layer_kinds" tensor.
enum LayerKind : uint8_t {
  kNoPe = 1u << 0,     // no RoPE (nor QK-norm) on this layer: HF no_rope_layers[l] == 0
  kChunked = 1u << 1,  // a query at pos attends to keys in [pos / c * c, pos], c the chunk size
};

// How RoPE frequencies are scaled (ConfigRecord::rope_scaling, version 2).
enum class RopeScaling : uint32_t {
  kNone = 0,
  kLlama3 = 1,  // HF _compute_llama3_parameters: factor, low/high_freq_factor, original context
};

enum class TokenizerKind : uint32_t {
  kSentencePiece = 1,  // "tokenizer" tensor is a serialized sentencepiece ModelProto
  kByteLevelBpe = 2,   // "tokenizer" tensor is a ByteLevelBpe blob (below): HF tokenizer.json BPE
};

// The byte-level BPE blob (TokenizerKind::kByteLevelBpe): what an HF tokenizer.json of model type
// BPE with ByteLevel pre-tokenization and decoding holds (Llama-3's, GPT-2's), reduced to what
// encoding and decoding need. Written by mobilellm-convert (tools/convert/tokenizer_json.cpp),
// read by src/byte_level_bpe.cpp, which checks every field before use. Little-endian:
//
//   BpeHeader
//   uint32_t token_end[n_tokens]    end of token i's bytes in `text`: non-decreasing, the last
//                                   == text_bytes; token i is text[token_end[i-1], token_end[i])
//   BpeMerge merges[n_merges]       in rank order (rank 0 merges first)
//   BpeAddedToken added[n_added]    ids matched in the raw text before pre-tokenization
//   uint8_t text[text_bytes]        every token's bytes, back to back; nothing follows
//
// A token's bytes are what it stands for: vocabulary strings are stored decoded from the
// byte-to-unicode alphabet (so "Ġworld" is stored as " world"), added tokens as their UTF-8
// content. Checked at load: every id below n_tokens; ids 0..n_tokens-1 all defined and non-empty;
// each of the 256 single bytes is a vocabulary token; a merge's result is its two parts'
// bytes joined and no pair appears twice; added tokens unique, at most kMaxAddedTokenBytes.
inline constexpr char kBpeMagic[4] = {'B', 'B', 'P', 'E'};
inline constexpr uint32_t kBpeVersion = 1;
inline constexpr uint32_t kMaxAddedTokenBytes = 256;  // bounds added-token matching per position

// The Split regex a tokenizer.json pre-tokenizes with, recognised by its exact pattern string.
enum class PreTokenizer : uint32_t {
  kLlama3 = 1,  // Llama-3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|...
  kGpt2 = 2,    // GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
};

enum BpeFlags : uint32_t {
  kBpeIgnoreMerges = 1,  // a pre-token that is itself a vocabulary token is taken whole
};

struct BpeHeader {
  char magic[4];           // kBpeMagic
  uint32_t version;        // kBpeVersion; larger is refused
  uint32_t pre_tokenizer;  // PreTokenizer
  uint32_t flags;          // BpeFlags; unknown bits are refused
  uint32_t n_tokens;       // ids 0..n_tokens-1, vocabulary and added tokens; <= 1 << 22
  uint32_t n_merges;       // <= 1 << 24
  uint32_t n_added;        // <= n_tokens
  uint32_t text_bytes;     // <= 1 << 30
};
static_assert(sizeof(BpeHeader) == 32);

struct BpeMerge {
  uint32_t left, right;  // the pair's token ids
  uint32_t result;       // the merged token's id
};
static_assert(sizeof(BpeMerge) == 12);

enum BpeAddedFlags : uint32_t {
  kBpeAddedSpecial = 1,  // tokenizer.json "special": a control token (chat markers, BOS/EOS)
};

struct BpeAddedToken {
  uint32_t id;
  uint32_t flags;  // BpeAddedFlags; unknown bits are refused
};
static_assert(sizeof(BpeAddedToken) == 8);

// The model's hyper-parameters. All fields checked by ModelConfig::Validate (config.h).
struct ConfigRecord {
  uint32_t vocab_size;      // rows of token_embd, > 0; MobileLLM: 32000
  uint32_t dim;             // residual width, > 0, == n_heads * head_dim
  uint32_t ffn_dim;         // SwiGLU hidden width, > 0
  uint32_t n_blocks;        // stored blocks (blk.0 .. blk.{n_blocks-1}), > 0
  uint32_t n_repeat;        // times each block runs in a row: 1, or 2 for layer-shared (LS) models
  uint32_t n_heads;         // query heads, > 0
  uint32_t n_kv_heads;      // key/value heads, > 0, divides n_heads (GQA)
  uint32_t head_dim;        // per head, even, > 0
  uint32_t n_ctx;           // trained context length (max_position_embeddings), > 0
  float rope_theta;         // RoPE base, > 0; MobileLLM: 10000
  uint32_t rope_style;      // RopeStyle
  float norm_eps;           // RMSNorm epsilon, > 0; MobileLLM: 1e-5
  int32_t bos_id;           // beginning-of-sequence id, in [0, vocab_size); MobileLLM: 1
  int32_t eos_id;           // end-of-sequence id, in [0, vocab_size); MobileLLM: 2
  uint32_t tied_head;       // 1: logits = norm(h) @ token_embd^T; 0: an "output" tensor exists
  uint32_t tokenizer_kind;  // TokenizerKind
  // Version 2 (zero, and ignored, in version 1):
  uint32_t arch;                  // Arch
  uint32_t flags;                 // ConfigFlags; unknown bits refused
  float attn_scale;               // temperature tuning strength (HF attn_scale), finite
  float floor_scale;              // temperature tuning step in tokens (HF floor_scale), > 0
  uint32_t attention_chunk_size;  // for kChunked layers, a multiple of 16; 0: no chunking
  uint32_t rope_scaling;          // RopeScaling
  float rope_factor;              // llama3: factor, > 0
  float rope_low_freq_factor;     // llama3: low_freq_factor, > 0
  float rope_high_freq_factor;    // llama3: high_freq_factor, > low_freq_factor
  uint32_t rope_original_n_ctx;   // llama3: original_max_position_embeddings, > 0
  int32_t extra_eos_ids[3];       // more end-of-sequence ids, -1 for none; in the vocabulary
  uint32_t reserved[3];           // zero
};
static_assert(sizeof(ConfigRecord) == 128);

struct FileHeader {
  char magic[4];          // kMagic; checked, and GGUF / PyTorch / safetensors files named
  uint32_t version;       // kVersion; checked: larger than ours is refused
  uint32_t header_size;   // kHeaderSize; checked
  uint32_t alignment;     // data alignment in bytes, a power of two >= kMinAlignment; checked
  uint64_t file_size;     // total bytes; checked against the real size (truncation)
  uint64_t table_offset;  // byte offset of the tensor table, >= header_size, 8-aligned; checked
  uint32_t tensor_count;  // entries in the table, <= kMaxTensors; checked to fit in the file
  uint32_t entry_size;    // kEntrySize; checked
  ConfigRecord config;    // checked by ModelConfig::Validate
  char producer[64];      // NUL-terminated free text: tool and version that wrote the file
  uint8_t reserved[kHeaderSize - 40 - sizeof(ConfigRecord) - 64];  // zero
};
static_assert(sizeof(FileHeader) == kHeaderSize);

// One tensor. Shape is outermost first: a weight matrix is [out_features, in_features], row-major,
// exactly as PyTorch stores nn.Linear.weight.
struct TensorEntry {
  char name[48];             // NUL-terminated, unique, [kMaxNameLength] chars at most; checked
  uint32_t dtype;            // DType; checked
  uint32_t layout;           // Layout; checked (kPanels: a quantized matrix, rows % 16 == 0)
  uint32_t rank;             // 1..kMaxRank; checked
  uint32_t reserved0;        // zero
  uint64_t shape[kMaxRank];  // dims beyond rank are 0; checked against the config
  uint64_t offset;  // from file start, multiple of header.alignment; checked in range, no overlap
  uint64_t nbytes;  // == product(shape) * DTypeSize(dtype); checked
  uint32_t crc32;   // CRC-32 (IEEE, zlib's) of the nbytes of data; checked by --verify
  uint32_t reserved1[3];  // zero
};
static_assert(sizeof(TensorEntry) == kEntrySize);

// Bytes per element, or 0 for a dtype this version does not know.
constexpr size_t DTypeSize(uint32_t dtype) {
  switch (static_cast<DType>(dtype)) {
    case DType::kF32:
      return 4;
    case DType::kF16:
      return 2;
    case DType::kBF16:
      return 2;
    case DType::kU8:
      return 1;
    case DType::kQ8_0:  // block types have no element size: see TensorBytes
    case DType::kQ4_0:
      return 0;
  }
  return 0;
}

constexpr const char* DTypeName(uint32_t dtype) {
  switch (static_cast<DType>(dtype)) {
    case DType::kF32:
      return "f32";
    case DType::kF16:
      return "f16";
    case DType::kBF16:
      return "bf16";
    case DType::kU8:
      return "u8";
    case DType::kQ8_0:
      return "q8_0";
    case DType::kQ4_0:
      return "q4_0";
  }
  return "unknown";
}

constexpr bool IsQuantized(uint32_t dtype) {
  return dtype == uint32_t(DType::kQ8_0) || dtype == uint32_t(DType::kQ4_0);
}

// Bytes of a tensor of this dtype and shape, or 0 if the combination is invalid (unknown dtype,
// a quantized tensor that is not a matrix with cols % kBlock == 0). Callers bound the shape first.
constexpr uint64_t TensorBytes(uint32_t dtype, uint32_t rank, const uint64_t* shape) {
  uint64_t n = 1;
  for (uint32_t i = 0; i < rank; ++i) n *= shape[i];
  if (IsQuantized(dtype)) {
    if (rank != 2 || shape[1] % kBlock != 0) return 0;
    return (dtype == uint32_t(DType::kQ8_0) ? n : n / 2) + n / kBlock * 2;
  }
  return n * DTypeSize(dtype);
}

}  // namespace mobilellm::format
