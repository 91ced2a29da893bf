// The tables native/addon.ts must agree with, as the addon exports them (exports.contract): the LoRA targets,
// the dtype codes, the packed adapter layout and the Engine class's methods. Read from the C++ tables
// themselves, so TypeScript keeps no copy of them and test/native-contract.test.ts can hold both sides together.
#pragma once

#include <napi.h>

namespace loraserve {

// `engineClass` is the Engine constructor whose prototype's methods are listed.
Napi::Object contractToJs(Napi::Env env, const Napi::Function& engineClass);

}  // namespace loraserve
