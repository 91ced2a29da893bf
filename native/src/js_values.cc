#include "js_values.h"

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <string>
#include <utility>

#include "packed_adapter_layout.h"

namespace loraserve {

namespace {

[[noreturn]] void typeError(const Napi::Env& env, const std::string& path, const std::string& expected) {
  throw Napi::TypeError::New(env, path + " must be " + expected);
}

// A value's path in an error message: a string, or a function that spells it, so that the conversion that runs for
// every sequence of every step (seqStepAt) spells a path only when it throws.
inline const std::string& pathText(const std::string& path) { return path; }
template <typename Spell>
std::string pathText(const Spell& path) {
  return path();
}

template <typename Path>
Napi::Object objectAt(const Napi::Value& value, const Path& path) {
  if (!value.IsObject()) typeError(value.Env(), pathText(path), "an object");
  return value.As<Napi::Object>();
}

Napi::Value field(const Napi::Object& object, const char* key) { return object.Get(key); }

template <typename Path>
double numberAt(const Napi::Value& value, const Path& path) {
  if (!value.IsNumber()) typeError(value.Env(), pathText(path), "a number");
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(number)) typeError(value.Env(), pathText(path), "a finite number");
  return number;
}

template <typename Path>
int64_t integerAt(const Napi::Value& value, const Path& path, double min, double max) {
  const double number = numberAt(value, path);
  if (number != std::floor(number) || number < min || number > max) {
    typeError(value.Env(), pathText(path), "an integer in [" + std::to_string(static_cast<int64_t>(min)) + ", " +
                                               std::to_string(static_cast<int64_t>(max)) + "]");
  }
  return static_cast<int64_t>(number);
}

constexpr double kMaxSafeInteger = 9007199254740991.0;  // Number.MAX_SAFE_INTEGER

template <typename Path>
int64_t sizeAt(const Napi::Value& value, const Path& path) {
  return integerAt(value, path, 0, kMaxSafeInteger);
}

template <typename Path>
int intAt(const Napi::Value& value, const Path& path, int min = 0) {
  return static_cast<int>(integerAt(value, path, min, std::numeric_limits<int32_t>::max()));
}

template <typename Path>
bool boolAt(const Napi::Value& value, const Path& path) {
  if (!value.IsBoolean()) typeError(value.Env(), pathText(path), "a boolean");
  return value.As<Napi::Boolean>().Value();
}

std::string stringAt(const Napi::Value& value, const std::string& path) {
  if (!value.IsString()) typeError(value.Env(), path, "a string");
  return value.As<Napi::String>().Utf8Value();
}

// An optional number of the contract: absent (undefined) means `fallback`.
template <typename Path>
double optionalNumberAt(const Napi::Value& value, const Path& path, double fallback) {
  return value.IsUndefined() ? fallback : numberAt(value, path);
}

Napi::Array arrayAt(const Napi::Value& value, const std::string& path) {
  if (!value.IsArray()) typeError(value.Env(), path, "an array");
  return value.As<Napi::Array>();
}

template <typename Path>
std::vector<int32_t> int32ArrayAt(const Napi::Value& value, const Path& path) {
  if (!value.IsTypedArray() || value.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    typeError(value.Env(), pathText(path), "an Int32Array");
  }
  const Napi::Int32Array array = value.As<Napi::Int32Array>();
  return std::vector<int32_t>(array.Data(), array.Data() + array.ElementLength());
}

// The names a TypeError lists for a choice: "a", "b" or "c".
template <typename Names>
std::string quotedChoices(const Names& names) {
  std::string text;
  size_t index = 0;
  for (const char* name : names) {
    text += std::string(index == 0 ? "" : index + 1 == std::size(names) ? " or " : ", ") + "\"" + name + "\"";
    ++index;
  }
  return text;
}

// The choice a string names; otherwise a TypeError that lists the names.
template <typename E>
E choiceAt(const Napi::Value& value, const std::string& path, std::initializer_list<std::pair<const char*, E>> choices) {
  const std::string name = stringAt(value, path);
  std::vector<const char*> names;
  for (const auto& [choiceName, choice] : choices) {
    if (name == choiceName) return choice;
    names.push_back(choiceName);
  }
  typeError(value.Env(), path, quotedChoices(names));
}

DType dtypeAt(const Napi::Value& value, const std::string& path) {
  const std::string name = stringAt(value, path);
  for (int code = 0; code < kNumDTypes; ++code) {
    if (name == kDTypeNames[code]) return static_cast<DType>(code);
  }
  typeError(value.Env(), path, quotedChoices(kDTypeNames));
}

TensorRef tensorRefAt(const Napi::Value& value, const std::string& path) {
  const Napi::Object object = objectAt(value, path);
  TensorRef ref;
  ref.file = stringAt(field(object, "file"), path + ".file");
  ref.dtype = dtypeAt(field(object, "dtype"), path + ".dtype");
  const Napi::Array shape = arrayAt(field(object, "shape"), path + ".shape");
  for (uint32_t i = 0; i < shape.Length(); ++i) {
    ref.shape.push_back(sizeAt(shape.Get(i), path + ".shape[" + std::to_string(i) + "]"));
  }
  ref.offset = static_cast<uint64_t>(sizeAt(field(object, "offset"), path + ".offset"));
  ref.nbytes = static_cast<uint64_t>(sizeAt(field(object, "nbytes"), path + ".nbytes"));
  return ref;
}

RopeScaling ropeScalingAt(const Napi::Value& value, const std::string& path) {
  const Napi::Object object = objectAt(value, path);
  const std::string type = stringAt(field(object, "type"), path + ".type");
  RopeScaling scaling;
  if (type == "none") return scaling;
  scaling.factor = numberAt(field(object, "factor"), path + ".factor");
  if (type == "linear") {
    scaling.type = RopeScaling::Type::Linear;
  } else if (type == "llama3") {
    scaling.type = RopeScaling::Type::Llama3;
    scaling.lowFreqFactor = numberAt(field(object, "lowFreqFactor"), path + ".lowFreqFactor");
    scaling.highFreqFactor = numberAt(field(object, "highFreqFactor"), path + ".highFreqFactor");
    scaling.originalMaxPositionEmbeddings =
        numberAt(field(object, "originalMaxPositionEmbeddings"), path + ".originalMaxPositionEmbeddings");
  } else {
    typeError(value.Env(), path + ".type", "\"none\", \"linear\" or \"llama3\"");
  }
  return scaling;
}

ModelSpec specAt(const Napi::Value& value, const std::string& path) {
  const Napi::Object object = objectAt(value, path);
  ModelSpec spec;
  spec.hiddenSize = sizeAt(field(object, "hiddenSize"), path + ".hiddenSize");
  spec.intermediateSize = sizeAt(field(object, "intermediateSize"), path + ".intermediateSize");
  spec.numLayers = intAt(field(object, "numLayers"), path + ".numLayers");
  spec.numHeads = intAt(field(object, "numHeads"), path + ".numHeads");
  spec.numKvHeads = intAt(field(object, "numKvHeads"), path + ".numKvHeads");
  spec.headDim = sizeAt(field(object, "headDim"), path + ".headDim");
  spec.vocabSize = sizeAt(field(object, "vocabSize"), path + ".vocabSize");
  spec.rmsNormEps = numberAt(field(object, "rmsNormEps"), path + ".rmsNormEps");
  spec.ropeTheta = numberAt(field(object, "ropeTheta"), path + ".ropeTheta");
  spec.ropeScaling = ropeScalingAt(field(object, "ropeScaling"), path + ".ropeScaling");
  spec.maxPositionEmbeddings = sizeAt(field(object, "maxPositionEmbeddings"), path + ".maxPositionEmbeddings");
  return spec;
}

LayerWeightRefs layerAt(const Napi::Value& value, const std::string& path) {
  const Napi::Object object = objectAt(value, path);
  auto ref = [&](const char* key) { return tensorRefAt(field(object, key), path + "." + key); };
  LayerWeightRefs layer;
  layer.inputNorm = ref("inputNorm");
  layer.postAttentionNorm = ref("postAttentionNorm");
  layer.q = ref("q");
  layer.k = ref("k");
  layer.v = ref("v");
  layer.o = ref("o");
  layer.gate = ref("gate");
  layer.up = ref("up");
  layer.down = ref("down");
  return layer;
}

BaseWeightRefs weightsAt(const Napi::Value& value, const std::string& path) {
  const Napi::Object object = objectAt(value, path);
  BaseWeightRefs weights;
  weights.embedTokens = tensorRefAt(field(object, "embedTokens"), path + ".embedTokens");
  const Napi::Value lmHead = field(object, "lmHead");
  if (!lmHead.IsNull()) weights.lmHead = tensorRefAt(lmHead, path + ".lmHead");
  weights.finalNorm = tensorRefAt(field(object, "finalNorm"), path + ".finalNorm");
  const Napi::Array layers = arrayAt(field(object, "layers"), path + ".layers");
  for (uint32_t i = 0; i < layers.Length(); ++i) {
    weights.layers.push_back(layerAt(layers.Get(i), path + ".layers[" + std::to_string(i) + "]"));
  }
  return weights;
}

// AdapterWeights.pairs as native/addon.ts packAdapter lays them out (packed_adapter_layout.h). The packer writes -1
// for what it cannot encode (a file that is not a string, an unknown name, a shape that is not an array) and NaN for
// a non-number, so every check of the object form stays here, and errors name the field of the caller's
// AdapterWeights.
class PackedPairs {
 public:
  PackedPairs(Napi::Env env, const Napi::Float64Array& numbers, const std::vector<std::string>& files)
      : env_(env), numbers_(numbers.Data()), size_(numbers.ElementLength()), files_(files) {}

  bool done() const { return next_ == size_; }

  LoraPairRef next() {
    LoraPairRef pair;
    for (const auto& [field, name] : kPackedPairLayout) {
      switch (field) {
        case PackedPairField::Layer:
          pair.layer = static_cast<int>(integer({pair_, nullptr, name}, std::numeric_limits<int32_t>::max()));
          break;
        case PackedPairField::Target:
          pair.target = static_cast<LoraTarget>(code({pair_, nullptr, name}, kNumLoraTargets, targetChoices()));
          break;
        case PackedPairField::A: pair.a = tensor(name); break;
        case PackedPairField::B: pair.b = tensor(name); break;
      }
    }
    ++pair_;
    return pair;
  }

 private:
  // What a bad target or dtype code is expected to be, built once rather than for every pair.
  static const std::string& targetChoices() {
    static const std::string text = [] {
      std::string list = "one of ";
      for (int t = 0; t < kNumLoraTargets; ++t) list += std::string(t == 0 ? "" : ", ") + kLoraTargetNames[t];
      return list;
    }();
    return text;
  }

  static const std::string& dtypeChoices() {
    static const std::string text = quotedChoices(kDTypeNames);
    return text;
  }

  // A field of pairs[pair], spelled out only when it fails, so a good adapter builds no path strings.
  struct Field {
    size_t pair;
    const char* half;  // "a", "b", or null for the pair's own fields
    const char* name;
    int64_t dim = -1;  // with name "shape": which dim

    std::string path() const {
      std::string text = "AdapterWeights.pairs[" + std::to_string(pair) + "].";
      if (half) text += std::string(half) + ".";
      text += name;
      if (dim >= 0) text += "[" + std::to_string(dim) + "]";
      return text;
    }
  };

  double take(const Field& field) {
    if (next_ == size_) {
      throw Napi::TypeError::New(env_, "AdapterWeights.pairs (packed) ends before " + field.path());
    }
    return numbers_[next_++];
  }

  int64_t integer(const Field& field, double max) {
    const double number = take(field);
    if (std::isnan(number)) typeError(env_, field.path(), "a number");
    if (!std::isfinite(number)) typeError(env_, field.path(), "a finite number");
    if (number != std::floor(number) || number < 0 || number > max) {
      typeError(env_, field.path(), "an integer in [0, " + std::to_string(static_cast<int64_t>(max)) + "]");
    }
    return static_cast<int64_t>(number);
  }

  // An index in [0, count) that the packer wrote; anything else is its -1 for a value it could not encode.
  size_t code(const Field& field, size_t count, const std::string& expected) {
    const double number = take(field);
    if (!(number >= 0 && number < static_cast<double>(count) && number == std::floor(number))) {
      typeError(env_, field.path(), expected);
    }
    return static_cast<size_t>(number);
  }

  TensorRef tensor(const char* half) {
    TensorRef ref;
    for (const auto& [field, name] : kPackedTensorLayout) {
      switch (field) {
        case PackedTensorField::File: ref.file = files_[code({pair_, half, name}, files_.size(), "a string")]; break;
        case PackedTensorField::DType:
          ref.dtype = static_cast<DType>(code({pair_, half, name}, kNumDTypes, dtypeChoices()));
          break;
        case PackedTensorField::Offset:
          ref.offset = static_cast<uint64_t>(integer({pair_, half, name}, kMaxSafeInteger));
          break;
        case PackedTensorField::Nbytes:
          ref.nbytes = static_cast<uint64_t>(integer({pair_, half, name}, kMaxSafeInteger));
          break;
        case PackedTensorField::Shape: {
          const size_t dims = code({pair_, half, name}, size_ - next_ + 1, "an array");
          ref.shape.reserve(dims);
          for (size_t d = 0; d < dims; ++d) {
            ref.shape.push_back(integer({pair_, half, name, static_cast<int64_t>(d)}, kMaxSafeInteger));
          }
          break;
        }
      }
    }
    return ref;
  }

  Napi::Env env_;
  const double* numbers_;
  size_t size_;
  size_t next_ = 0;
  size_t pair_ = 0;
  const std::vector<std::string>& files_;
};

// The property names of a SeqStep, made once per step rather than once per read.
struct SeqStepKeys {
  explicit SeqStepKeys(Napi::Env env)
      : tokens(key(env, "tokens")), previousResult(key(env, "previousResult")), startPos(key(env, "startPos")),
        blockTable(key(env, "blockTable")), adapterSlot(key(env, "adapterSlot")), sample(key(env, "sample")),
        sampling(key(env, "sampling")), temperature(key(env, "temperature")), topK(key(env, "topK")),
        topP(key(env, "topP")), seed(key(env, "seed")), draw(key(env, "draw")), typicalP(key(env, "typicalP")),
        repetitionPenalty(key(env, "repetitionPenalty")), frequencyPenalty(key(env, "frequencyPenalty")),
        presencePenalty(key(env, "presencePenalty")), penaltyTokens(key(env, "penaltyTokens")),
        penaltyPromptLength(key(env, "penaltyPromptLength")), topN(key(env, "topN")),
        logprobTargets(key(env, "logprobTargets")), returnLogits(key(env, "returnLogits")) {}

  static Napi::String key(Napi::Env env, const char* name) { return Napi::String::New(env, name); }

  Napi::String tokens, previousResult, startPos, blockTable, adapterSlot, sample, sampling, temperature, topK, topP,
      seed, draw, typicalP, repetitionPenalty, frequencyPenalty, presencePenalty, penaltyTokens, penaltyPromptLength,
      topN, logprobTargets, returnLogits;
};

SeqStep seqStepAt(const Napi::Value& value, const SeqStepKeys& keys, uint32_t index) {
  const auto path = [index] { return "seqs[" + std::to_string(index) + "]"; };
  const auto at = [&path](const char* name) { return [&path, name] { return path() + "." + name; }; };
  const auto samplingAt = [&path](const char* name) { return [&path, name] { return path() + ".sampling." + name; }; };
  const Napi::Object object = objectAt(value, path);
  SeqStep seq;
  seq.tokens = int32ArrayAt(object.Get(keys.tokens), at("tokens"));
  const Napi::Value previousResult = object.Get(keys.previousResult);
  if (!previousResult.IsUndefined()) seq.previousResult = intAt(previousResult, at("previousResult"));
  seq.startPos = sizeAt(object.Get(keys.startPos), at("startPos"));
  seq.blockTable = int32ArrayAt(object.Get(keys.blockTable), at("blockTable"));
  seq.adapterSlot = intAt(object.Get(keys.adapterSlot), at("adapterSlot"), -1);
  seq.sample = boolAt(object.Get(keys.sample), at("sample"));
  const Napi::Object sampling = objectAt(object.Get(keys.sampling), at("sampling"));
  seq.sampling.temperature = numberAt(sampling.Get(keys.temperature), samplingAt("temperature"));
  seq.sampling.topK = sizeAt(sampling.Get(keys.topK), samplingAt("topK"));
  seq.sampling.topP = numberAt(sampling.Get(keys.topP), samplingAt("topP"));
  seq.sampling.seed = static_cast<uint64_t>(sizeAt(sampling.Get(keys.seed), samplingAt("seed")));
  seq.sampling.draw = static_cast<uint64_t>(sizeAt(sampling.Get(keys.draw), samplingAt("draw")));
  seq.sampling.typicalP = optionalNumberAt(sampling.Get(keys.typicalP), samplingAt("typicalP"), 1.0);
  seq.sampling.repetitionPenalty =
      optionalNumberAt(sampling.Get(keys.repetitionPenalty), samplingAt("repetitionPenalty"), 1.0);
  seq.sampling.frequencyPenalty =
      optionalNumberAt(sampling.Get(keys.frequencyPenalty), samplingAt("frequencyPenalty"), 0.0);
  seq.sampling.presencePenalty =
      optionalNumberAt(sampling.Get(keys.presencePenalty), samplingAt("presencePenalty"), 0.0);
  const Napi::Value penaltyTokens = object.Get(keys.penaltyTokens);
  if (!penaltyTokens.IsUndefined() && !penaltyTokens.IsNull()) {
    seq.penaltyTokens = int32ArrayAt(penaltyTokens, at("penaltyTokens"));
    seq.penaltyPromptLength = sizeAt(object.Get(keys.penaltyPromptLength), at("penaltyPromptLength"));
  }
  seq.topN = intAt(object.Get(keys.topN), at("topN"));
  const Napi::Value targets = object.Get(keys.logprobTargets);
  if (!targets.IsNull()) {
    seq.logprobTargets = int32ArrayAt(targets, at("logprobTargets"));
    if (seq.logprobTargets.size() != seq.tokens.size()) {
      typeError(targets.Env(), at("logprobTargets")(), "null or one entry per token");
    }
  }
  seq.returnLogits = boolAt(object.Get(keys.returnLogits), at("returnLogits"));
  return seq;
}

Napi::Int32Array toInt32Array(Napi::Env env, const std::vector<int32_t>& values) {
  Napi::Int32Array array = Napi::Int32Array::New(env, values.size());
  if (!values.empty()) std::memcpy(array.Data(), values.data(), values.size() * sizeof(int32_t));
  return array;
}

Napi::Float32Array toFloat32Array(Napi::Env env, const std::vector<float>& values) {
  Napi::Float32Array array = Napi::Float32Array::New(env, values.size());
  if (!values.empty()) std::memcpy(array.Data(), values.data(), values.size() * sizeof(float));
  return array;
}

}  // namespace


EngineOptions engineOptionsFromJs(const Napi::Value& value) {
  const std::string path = "EngineOptions";
  const Napi::Object object = objectAt(value, path);
  EngineOptions options;
  options.device = choiceAt<Device>(field(object, "device"), path + ".device", {{"cpu", Device::Cpu}, {"cuda", Device::Cuda}});
  options.rank = intAt(field(object, "rank"), path + ".rank");
  options.world = intAt(field(object, "world"), path + ".world", 1);
  const Napi::Value masterAddr = field(object, "masterAddr");
  if (!masterAddr.IsUndefined()) options.masterAddr = stringAt(masterAddr, path + ".masterAddr");
  const Napi::Value masterPort = field(object, "masterPort");
  if (!masterPort.IsUndefined()) options.masterPort = intAt(masterPort, path + ".masterPort", 1);
  options.spec = specAt(field(object, "spec"), path + ".spec");
  options.weights = weightsAt(field(object, "weights"), path + ".weights");
  options.numKvBlocks = intAt(field(object, "numKvBlocks"), path + ".numKvBlocks");
  options.blockSize = intAt(field(object, "blockSize"), path + ".blockSize", 1);
  options.maxLoras = intAt(field(object, "maxLoras"), path + ".maxLoras", -1);
  options.maxLoraRank = intAt(field(object, "maxLoraRank"), path + ".maxLoraRank");
  options.threads = intAt(field(object, "threads"), path + ".threads");
  options.gpuMemoryFraction =
      optionalNumberAt(field(object, "gpuMemoryFraction"), path + ".gpuMemoryFraction", options.gpuMemoryFraction);
  options.adapterMemoryFraction = optionalNumberAt(field(object, "adapterMemoryFraction"), path + ".adapterMemoryFraction",
                                                   options.adapterMemoryFraction);
  const Napi::Value gpu = field(object, "gpu");
  if (!gpu.IsUndefined()) options.gpu = intAt(gpu, path + ".gpu", -1);
  const Napi::Value tensorParallelPath = field(object, "tensorParallelPath");
  if (!tensorParallelPath.IsUndefined()) options.tensorParallelPath = boolAt(tensorParallelPath, path + ".tensorParallelPath");
  const Napi::Value dtype = field(object, "dtype");
  if (!dtype.IsUndefined()) {
    options.dtype = choiceAt<DeviceDtype>(dtype, path + ".dtype",
                                          {{"float16", DeviceDtype::Float16}, {"bfloat16", DeviceDtype::Bfloat16}});
  }
  return options;
}

AdapterRefs adapterFromJs(const Napi::Value& value, std::vector<Napi::ObjectReference>& keepAlive) {
  const std::string path = "AdapterWeights";
  const Napi::Object object = objectAt(value, path);
  AdapterRefs adapter;
  const Napi::Value fileBytes = field(object, "fileBytes");
  if (!fileBytes.IsUndefined()) {
    const std::string bytesPath = path + ".fileBytes";
    const Napi::Object files = objectAt(fileBytes, bytesPath);
    const Napi::Array names = files.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
      const std::string name = stringAt(names.Get(i), bytesPath + " key");
      const Napi::Value bytes = files.Get(name);
      if (!bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
        typeError(value.Env(), bytesPath + "[" + name + "]", "a Uint8Array");
      }
      const Napi::Uint8Array array = bytes.As<Napi::Uint8Array>();
      adapter.fileBytes[name] = BorrowedBytes{array.Data(), array.ByteLength()};
      keepAlive.push_back(Napi::Persistent(array.As<Napi::Object>()));
    }
  }
  adapter.rank = intAt(field(object, "rank"), path + ".rank");
  adapter.scaling = numberAt(field(object, "scaling"), path + ".scaling");
  const Napi::Array fileNames = arrayAt(field(object, "files"), path + ".files");
  std::vector<std::string> files;
  files.reserve(fileNames.Length());
  for (uint32_t i = 0; i < fileNames.Length(); ++i) {
    files.push_back(stringAt(fileNames.Get(i), path + ".files[" + std::to_string(i) + "]"));
  }
  const Napi::Value pairs = field(object, "pairs");
  if (!pairs.IsTypedArray() || pairs.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    typeError(value.Env(), path + ".pairs", "a Float64Array (packed by native/addon.ts)");
  }
  PackedPairs packed(value.Env(), pairs.As<Napi::Float64Array>(), files);
  while (!packed.done()) adapter.pairs.push_back(packed.next());
  return adapter;
}

std::vector<SeqStep> seqStepsFromJs(const Napi::Value& value) {
  const Napi::Array array = arrayAt(value, "seqs");
  std::vector<SeqStep> seqs;
  seqs.reserve(array.Length());
  const SeqStepKeys keys(value.Env());
  for (uint32_t i = 0; i < array.Length(); ++i) seqs.push_back(seqStepAt(array.Get(i), keys, i));
  return seqs;
}

std::vector<FiniteScanSpan> finiteScanSpansFromJs(const Napi::Value& bytes, const Napi::Value& spans,
                                                  Napi::Uint8Array& data) {
  if (!bytes.IsTypedArray() || bytes.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    typeError(bytes.Env(), "bytes", "a Uint8Array");
  }
  if (!spans.IsTypedArray() || spans.As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    typeError(spans.Env(), "spans", "a Float64Array");
  }
  data = bytes.As<Napi::Uint8Array>();
  const Napi::Float64Array numbers = spans.As<Napi::Float64Array>();
  if (numbers.ElementLength() % 3 != 0) {
    throw Napi::TypeError::New(spans.Env(), "spans must hold [dtype, offset, nbytes] triples");
  }
  std::vector<FiniteScanSpan> result;
  for (size_t i = 0; i < numbers.ElementLength(); i += 3) {
    const std::string span = "span " + std::to_string(i / 3);
    const double code = numbers[i], offset = numbers[i + 1], nbytes = numbers[i + 2];
    if (!(code >= 0 && code < kNumDTypes && code == std::floor(code))) {
      throw Napi::RangeError::New(spans.Env(), span + ": unknown dtype code");
    }
    const DType dtype = static_cast<DType>(static_cast<int>(code));
    // In range as doubles before any cast (a cast of an out-of-range double is undefined).
    if (!(offset >= 0 && nbytes >= 0 && offset == std::floor(offset) && nbytes == std::floor(nbytes) &&
          offset + nbytes <= static_cast<double>(data.ByteLength()) &&
          static_cast<size_t>(nbytes) % dtypeSize(dtype) == 0)) {
      throw Napi::RangeError::New(spans.Env(), span + " is not whole elements inside the bytes");
    }
    result.push_back({dtype, static_cast<size_t>(offset), static_cast<size_t>(nbytes) / dtypeSize(dtype)});
  }
  return result;
}

Napi::Value seqResultsToJs(Napi::Env env, const std::vector<SeqResult>& results) {
  // This runs on the JS thread for every sequence of every step: the keys are made once per step, and the entries
  // that ask for no alternatives, targets or logits (most) share one empty array of each type.
  const Napi::String token = Napi::String::New(env, "token");
  const Napi::String logprob = Napi::String::New(env, "logprob");
  const Napi::String topIds = Napi::String::New(env, "topIds");
  const Napi::String topLogprobs = Napi::String::New(env, "topLogprobs");
  const Napi::String targetLogprobs = Napi::String::New(env, "targetLogprobs");
  const Napi::String logits = Napi::String::New(env, "logits");
  const Napi::Int32Array noInts = Napi::Int32Array::New(env, 0);
  const Napi::Float32Array noFloats = Napi::Float32Array::New(env, 0);
  auto ints = [&](const std::vector<int32_t>& values) -> Napi::Value {
    return values.empty() ? noInts : toInt32Array(env, values);
  };
  auto floats = [&](const std::vector<float>& values) -> Napi::Value {
    return values.empty() ? noFloats : toFloat32Array(env, values);
  };
  Napi::Array array = Napi::Array::New(env, results.size());
  for (size_t i = 0; i < results.size(); ++i) {
    const SeqResult& result = results[i];
    Napi::Object object = Napi::Object::New(env);
    object.Set(token, Napi::Number::New(env, result.token));
    object.Set(logprob, Napi::Number::New(env, result.logprob));
    object.Set(topIds, ints(result.topIds));
    object.Set(topLogprobs, floats(result.topLogprobs));
    object.Set(targetLogprobs, floats(result.targetLogprobs));
    object.Set(logits, floats(result.logits));
    array.Set(static_cast<uint32_t>(i), object);
  }
  return array;
}

Napi::Value engineInfoToJs(Napi::Env env, const EngineInfo& info) {
  Napi::Object object = Napi::Object::New(env);
  object.Set("device", info.device == Device::Cpu ? "cpu" : "cuda");
  object.Set("numKvBlocks", info.numKvBlocks);
  object.Set("blockSize", info.blockSize);
  object.Set("maxLoras", info.maxLoras);
  object.Set("weightBytes", Napi::Number::New(env, static_cast<double>(info.weightBytes)));
  object.Set("steps", Napi::Number::New(env, static_cast<double>(info.steps)));
  object.Set("stepSeconds", info.stepSeconds);
  object.Set("collectiveSeconds", info.collectiveSeconds);
  object.Set("stepGapSeconds", info.stepGapSeconds);
  object.Set("loopWaitSeconds", info.loopWaitSeconds);
  return object;
}

}  // namespace loraserve
