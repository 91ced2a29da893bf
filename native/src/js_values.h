// Conversions between the plain JS objects of native/addon.ts and the engine's C++ structs. Runs on the JS
// thread; every malformed field throws a TypeError naming its path (e.g. "seqs[2].blockTable").
#pragma once

#include <napi.h>

#include <vector>

#include "adapter_refs.h"
#include "engine.h"
#include "engine_options.h"
#include "step_io.h"

namespace loraserve {

EngineOptions engineOptionsFromJs(const Napi::Value& value);
// `value` is AdapterWeights as native/addon.ts packAdapter hands it over (pairs packed in a Float64Array, file names
// in AdapterWeights.files); errors name the fields of the caller's unpacked AdapterWeights.
// `keepAlive` receives references to the Uint8Arrays of AdapterWeights.fileBytes, which `fileBytes` of the
// result points into: the caller holds them (and frees them on the JS thread) until the load is over.
AdapterRefs adapterFromJs(const Napi::Value& value, std::vector<Napi::ObjectReference>& keepAlive);
std::vector<SeqStep> seqStepsFromJs(const Napi::Value& value);

Napi::Value seqResultsToJs(Napi::Env env, const std::vector<SeqResult>& results);
Napi::Value engineInfoToJs(Napi::Env env, const EngineInfo& info);

}  // namespace loraserve
