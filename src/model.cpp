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
  return std::shared_ptr<const Model>(std::move(model));
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
