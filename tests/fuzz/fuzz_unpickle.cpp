// Fuzzes the restricted unpickler and the torch zip reader on the same bytes: any input must
// give a state dict or one error; nothing may crash, leak, overflow the stack or run.
//
// Seeds: tests/fuzz/corpus/fuzz_unpickle/ (a real torch.save data.pkl, tiny torch zips and
// safetensors files, and issue 20's crash classes: wrapping views, depth through the memo,
// cycles, value amplification, many members); dictionary: fuzz_unpickle.dict (opcode sequences,
// the allowed globals, zip record signatures, safetensors keys).
#include <cstdint>

#include "checkpoint.h"
#include "pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)mobilellm::convert::UnpickleStateDict(data, size, "fuzz.pkl");
  auto tensors = mobilellm::convert::ParseTorchZip(data, size, "fuzz.bin");
  if (tensors.ok()) {
    for (const auto& [name, t] : *tensors) {
      if (t.numel() > (1 << 16)) continue;
      std::vector<uint8_t> out(size_t(t.numel()) * 4);
      mobilellm::convert::ConvertTensor(t, mobilellm::DType::kF32, out.data());
    }
  }
  (void)mobilellm::convert::ParseSafetensors(data, size, "fuzz.safetensors");
  return 0;
}
