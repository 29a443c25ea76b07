// Model: a loaded file, its weights bound in place (weights.h) and its tokenizer.
//
// Load is where a model file can fail; after it, nothing about the weights is checked again.
// Sessions (session.cpp) run the forward pass over these views.

#include <optional>

#include "mobilellm/mobilellm.h"
#include "weights.h"

namespace mobilellm {

struct Model::Impl {
  std::unique_ptr<ModelFile> file;
  Weights weights;
  std::optional<Tokenizer> tokenizer;
  const KernelTable* kernels = nullptr;
  std::optional<ChatTemplate> chat_template;  // the file's, when it has one that parses
  Status chat_template_status;                // why there is none
  ChatSpecialTokens chat_tokens;
};

Model::Model() : impl_(new Impl) {}
Model::~Model() = default;
const ModelConfig& Model::config() const {
  return impl_->file->config();
}
const ModelFile& Model::file() const {
  return *impl_->file;
}
const KernelTable& Model::kernels() const {
  return *impl_->kernels;
}
const Model::Weights& Model::weights() const {
  return impl_->weights;
}

Result<std::shared_ptr<const Model>> Model::Load(const std::string& path,
                                                 const LoadOptions& options) {
  ModelFile::Options file_options;
  file_options.preload = options.preload;
  auto file = ModelFile::Open(path, file_options);
  if (!file.ok()) return file.status();
  std::shared_ptr<Model> model(new Model());
  Impl& m = *model->impl_;
  m.file = std::move(file).value();
  m.kernels = &SelectKernels();

  const ModelFile& f = *m.file;
  auto view = [&](const std::string& name) {
    return f.View(*f.Find(name));
  };  // Open checked presence
  Weights& w = m.weights;
  w.token_embd = view("token_embd");
  w.output_norm = view("output_norm");
  w.output = f.config().tied_head ? w.token_embd : view("output");
  for (int b = 0; b < f.config().n_blocks; ++b) {
    const std::string p = "blk." + std::to_string(b) + ".";
    w.blocks.push_back({view(p + "attn_norm"), view(p + "attn_q"), view(p + "attn_k"),
                        view(p + "attn_v"), view(p + "attn_o"), view(p + "ffn_norm"),
                        view(p + "ffn_gate"), view(p + "ffn_up"), view(p + "ffn_down")});
  }

  auto tokenizer =
      Tokenizer::Parse(f.config().tokenizer_kind, f.Bytes(*f.Find(format::kTokenizerTensor)));
  if (!tokenizer.ok())
    return Status::Error(path + ": tensor 'tokenizer': " + tokenizer.status().message());
  m.tokenizer = std::move(tokenizer).value();
  if (m.tokenizer->size() > f.config().vocab_size)
    return Status::Error(path + ": tokenizer has " + std::to_string(m.tokenizer->size()) +
                         " pieces, more than the model's vocab_size " +
                         std::to_string(f.config().vocab_size));
  LoadChatTemplate(path, f, m);
  return std::shared_ptr<const Model>(std::move(model));
}

// The optional chat-template tensors. A template that does not parse (the converter refuses such
// templates, so the file was made otherwise) does not fail the load: generate still works, and
// ApplyChatTemplate reports the parse error.
void Model::LoadChatTemplate(const std::string& path, const ModelFile& f, Impl& m) {
  auto bytes = [&](const char* name) -> std::optional<std::string> {
    const format::TensorEntry* e = f.Find(name);
    if (e == nullptr) return std::nullopt;
    return std::string(f.Bytes(*e));
  };
  m.chat_tokens.bos_token = bytes(format::kBosTokenTensor);
  m.chat_tokens.eos_token = bytes(format::kEosTokenTensor);
  const std::optional<std::string> source = bytes(format::kChatTemplateTensor);
  if (!source) {
    m.chat_template_status = Status::Error(
        path +
        ": this model has no chat template; use `mobilellm generate` with a raw prompt, "
        "or add one with `mobilellm-convert --chat-template FILE`");
    return;
  }
  auto parsed = ChatTemplate::Parse(*source);
  if (!parsed.ok()) {
    m.chat_template_status =
        Status::Error(path + ": tensor 'chat_template': " + parsed.status().message());
    return;
  }
  m.chat_template = std::move(parsed).value();
}

const ChatTemplate* Model::chat_template() const {
  return impl_->chat_template ? &*impl_->chat_template : nullptr;
}

const ChatSpecialTokens& Model::chat_tokens() const {
  return impl_->chat_tokens;
}

Result<std::string> Model::ApplyChatTemplate(const std::vector<ChatMessage>& messages,
                                             bool add_generation_prompt) const {
  if (!impl_->chat_template) return impl_->chat_template_status;
  auto text = impl_->chat_template->Render(messages, add_generation_prompt, impl_->chat_tokens);
  if (!text.ok()) return Status::Error(file().path() + ": " + text.status().message());
  return text;
}

std::vector<int> Model::Tokenize(std::string_view text, bool add_bos) const {
  std::vector<int> ids;
  if (add_bos) ids.push_back(config().bos_id);
  const std::vector<int> body = impl_->tokenizer->Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::string Model::Detokenize(const std::vector<int>& ids) const {
  return impl_->tokenizer->Decode(ids);
}

int Model::tokenizer_size() const {
  return impl_->tokenizer->size();
}

const Tokenizer& Model::tokenizer() const {
  return *impl_->tokenizer;
}

std::string Model::TokenBytes(int id) const {
  return impl_->tokenizer->PieceBytes(id);
}

}  // namespace mobilellm
