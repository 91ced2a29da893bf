#include "contract.h"

#include <string>

#include "dtype.h"
#include "lora_target.h"
#include "packed_adapter_layout.h"

namespace loraserve {

namespace {

template <typename Names>
Napi::Array namesToJs(Napi::Env env, const Names& names) {
  Napi::Array array = Napi::Array::New(env, names.size());
  for (size_t i = 0; i < names.size(); ++i) array.Set(static_cast<uint32_t>(i), names[i]);
  return array;
}

template <typename Layout>
Napi::Array layoutToJs(Napi::Env env, const Layout& layout) {
  Napi::Array array = Napi::Array::New(env, layout.size());
  for (size_t i = 0; i < layout.size(); ++i) array.Set(static_cast<uint32_t>(i), layout[i].second);
  return array;
}

Napi::Object dtypesToJs(Napi::Env env) {
  Napi::Object codes = Napi::Object::New(env);
  for (int code = 0; code < kNumDTypes; ++code) codes.Set(kDTypeNames[code], code);
  return codes;
}

// The prototype's own function-valued properties but the constructor. Instance methods of an ObjectWrap class
// are not enumerable, so every own string key is asked for.
Napi::Array methodNames(Napi::Env env, const Napi::Function& engineClass) {
  const Napi::Object prototype = engineClass.Get("prototype").As<Napi::Object>();
  napi_value keys = nullptr;
  const napi_status status = napi_get_all_property_names(env, prototype, napi_key_own_only, napi_key_skip_symbols,
                                                         napi_key_numbers_to_strings, &keys);
  NAPI_THROW_IF_FAILED(env, status, Napi::Array());
  const Napi::Array all(env, keys);
  Napi::Array methods = Napi::Array::New(env);
  for (uint32_t i = 0; i < all.Length(); ++i) {
    const std::string name = all.Get(i).As<Napi::String>().Utf8Value();
    if (name != "constructor" && prototype.Get(name).IsFunction()) methods.Set(methods.Length(), name);
  }
  return methods;
}

}  // namespace

Napi::Object contractToJs(Napi::Env env, const Napi::Function& engineClass) {
  Napi::Object packedLayout = Napi::Object::New(env);
  packedLayout.Set("pair", layoutToJs(env, kPackedPairLayout));
  packedLayout.Set("tensorRef", layoutToJs(env, kPackedTensorLayout));
  Napi::Object contract = Napi::Object::New(env);
  contract.Set("loraTargets", namesToJs(env, kLoraTargetNames));
  contract.Set("dtypes", dtypesToJs(env));
  contract.Set("packedLayout", packedLayout);
  contract.Set("engineMethods", methodNames(env, engineClass));
  return contract;
}

}  // namespace loraserve
