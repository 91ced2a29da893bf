// Conversions between the plain JS objects of native/addon.ts and the engine's C++ structs. Runs on the JS
// thread; every malformed field throws a TypeError naming its path (e.g. "seqs[2].blockTable").
#pragma once

#include <napi.h>

#include <vector>

#include "adapter_refs.h"
#include "engine.h"
#include "engine_options.h"
#include "finite_scan.h"
#include "step_io.h"

namespace loraserve {

EngineOptions engineOptionsFromJs(const Napi::Value& value);
// `value` is AdapterWeights as native/addon.ts packAdapter hands it over (pairs packed in a Float64Array, file names
// in AdapterWeights.files); errors name the fields of the caller's unpacked AdapterWeights.
// `keepAlive` receives references to the Uint8Arrays of AdapterWeights.fileBytes, which `fileBytes` of the
// result points into: the caller holds them (and frees them on the JS thread) until the load is over.
AdapterRefs adapterFromJs(const Napi::Value& value, std::vector<Napi::ObjectReference>& keepAlive);
std::vector<SeqStep> seqStepsFromJs(const Napi::Value& value);
// findNonFinite's spans: a Float64Array of [dtype code, byte offset, byte length] triples, each whole elements
// inside `bytes` (a Uint8Array, returned in `data`).
std::vector<FiniteScanSpan> finiteScanSpansFromJs(const Napi::Value& bytes, const Napi::Value& spans,
                                                  Napi::Uint8Array& data);

Napi::Value seqResultsToJs(Napi::Env env, const std::vector<SeqResult>& results);
Napi::Value engineInfoToJs(Napi::Env env, const EngineInfo& info);

}  // namespace loraserve
