// `mobilellm chat`: an interactive or scripted conversation over mobilellm::Chat (chat.h in
// include/). See chat.cpp.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "common.h"

namespace mobilellm::cli {

struct ChatArgs {
  std::string model, system, chat_template;
  int n = 256, threads = 0, ctx = 0;
  std::string kv_type = "f16";
  SamplingFlags sampling;
  std::vector<std::string> stop;
  bool json = false, verbose = false, preload = false;
};

// Adds the `chat` subcommand and its flags to `app`.
CLI::App* AddChatCommand(CLI::App& app, ChatArgs& args);
int RunChat(const ChatArgs& args);

}  // namespace mobilellm::cli
