// The N-API binding of native/addon.ts: an Engine class whose step and loadAdapter run on libuv worker
// threads and settle promises. Inputs are copied into C++ structs on the JS thread before the work is queued,
// so JS may reuse its typed arrays at once. Every failure of step/loadAdapter rejects the promise.
#include <napi.h>

#include <functional>
#include <memory>
#include <string>
#include <stdexcept>
#include <utility>
#include <vector>

#include "contract.h"
#include "engine.h"
#include "finite_scan.h"
#include "js_values.h"

namespace loraserve {

namespace {

Napi::Promise rejected(Napi::Env env, const Napi::Error& error) {
  Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
  deferred.Reject(error.Value());
  return deferred.Promise();
}

// `prepare` checks and copies the inputs and returns the worker to queue; any error it throws becomes a
// rejected promise, so callers see one failure path.
template <typename Prepare>
Napi::Value startWork(Napi::Env env, Prepare prepare) {
  try {
    auto* worker = prepare();
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  } catch (const Napi::Error& error) {
    return rejected(env, error);
  } catch (const std::exception& error) {
    return rejected(env, Napi::Error::New(env, error.what()));
  }
}

int slotAt(const Napi::Value& value) {
  if (!value.IsNumber() || value.As<Napi::Number>().DoubleValue() != value.As<Napi::Number>().Int32Value()) {
    throw Napi::TypeError::New(value.Env(), "slot must be an integer");
  }
  return value.As<Napi::Number>().Int32Value();
}

class StepWorker final : public Napi::AsyncWorker {
 public:
  StepWorker(Napi::Env env, std::shared_ptr<Engine> engine, std::vector<SeqStep> seqs)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), engine_(std::move(engine)),
        seqs_(std::move(seqs)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  // Takes the step's place in the engine's chain: the last thing before Queue(), since a ticket that never runs
  // would hold back every later step.
  void begin() { ticket_ = engine_->beginStep(seqs_); }

  void Execute() override { results_ = engine_->runStep(ticket_, seqs_); }

  void OnOK() override {
    engine_->endStep(ticket_.id);
    deferred_.Resolve(seqResultsToJs(Env(), results_));
  }

  void OnError(const Napi::Error& error) override {
    engine_->endStep(ticket_.id);
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Engine> engine_;
  StepTicket ticket_{};
  std::vector<SeqStep> seqs_;
  std::vector<SeqResult> results_;
};

class AdapterLoadWorker final : public Napi::AsyncWorker {
 public:
  AdapterLoadWorker(Napi::Env env, std::shared_ptr<Engine> engine, int slot, AdapterRefs refs,
                    std::vector<Napi::ObjectReference> keepAlive)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), engine_(std::move(engine)),
        slot_(slot), refs_(std::move(refs)), keepAlive_(std::move(keepAlive)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override { engine_->loadAdapter(slot_, refs_); }

  void OnOK() override {
    engine_->endAdapterLoad(slot_, true);
    deferred_.Resolve(Env().Undefined());
  }

  void OnError(const Napi::Error& error) override {
    engine_->endAdapterLoad(slot_, false);
    deferred_.Reject(error.Value());
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Engine> engine_;
  int slot_;
  AdapterRefs refs_;
  // The in-memory file bytes refs_ points into; released with the worker, on the JS thread.
  std::vector<Napi::ObjectReference> keepAlive_;
};

// Runs a long wait of the engine's on a worker thread: a follower's loop, or the leader's watch over its group.
class GroupWorker final : public Napi::AsyncWorker {
 public:
  GroupWorker(Napi::Env env, std::shared_ptr<Engine> engine, std::function<std::string(Engine&)> wait)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), engine_(std::move(engine)),
        wait_(std::move(wait)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override { outcome_ = wait_(*engine_); }
  void OnOK() override { deferred_.Resolve(Napi::String::New(Env(), outcome_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<Engine> engine_;
  std::function<std::string(Engine&)> wait_;
  std::string outcome_;
};

// findNonFinite(bytes, spans): for each span [dtype code, byte offset, byte length] of `bytes`, the index of its
// first NaN or infinity, or -1; scanned on a worker thread, the bytes kept alive (and unchanged) meanwhile.
class FiniteScanWorker final : public Napi::AsyncWorker {
 public:
  FiniteScanWorker(Napi::Env env, const Napi::Uint8Array& bytes, std::vector<FiniteScanSpan> spans)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), bytes_(Napi::Persistent(bytes)),
        data_(bytes.Data()), spans_(std::move(spans)) {}

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    for (const FiniteScanSpan& span : spans_) found_.push_back(firstNonFinite(data_ + span.offset, span.count, span.dtype));
  }

  void OnOK() override {
    Napi::Float64Array out = Napi::Float64Array::New(Env(), found_.size());
    for (size_t i = 0; i < found_.size(); ++i) out[i] = static_cast<double>(found_[i]);
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::Reference<Napi::Uint8Array> bytes_;
  const uint8_t* data_;
  std::vector<FiniteScanSpan> spans_;
  std::vector<int64_t> found_;
};

Napi::Value findNonFinite(const Napi::CallbackInfo& info) {
  return startWork(info.Env(), [&] {
    Napi::Uint8Array bytes;
    std::vector<FiniteScanSpan> spans = finiteScanSpansFromJs(info[0], info[1], bytes);
    return new FiniteScanWorker(info.Env(), bytes, std::move(spans));
  });
}

class EngineWrap final : public Napi::ObjectWrap<EngineWrap> {
 public:
  static Napi::Function define(Napi::Env env) {
    return DefineClass(env, "Engine",
                       {InstanceMethod<&EngineWrap::info>("info"), InstanceMethod<&EngineWrap::step>("step"),
                        InstanceMethod<&EngineWrap::loadAdapter>("loadAdapter"),
                        InstanceMethod<&EngineWrap::unloadAdapter>("unloadAdapter"),
                        InstanceMethod<&EngineWrap::resumeFromIdle>("resumeFromIdle"),
                        InstanceMethod<&EngineWrap::follow>("follow"),
                        InstanceMethod<&EngineWrap::watchGroup>("watchGroup"),
                        InstanceMethod<&EngineWrap::close>("close")});
  }

  explicit EngineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<EngineWrap>(info) {
    if (!info.IsConstructCall()) throw Napi::TypeError::New(info.Env(), "Engine must be called with new");
    engine_ = std::make_shared<Engine>(engineOptionsFromJs(info[0]));
  }

 private:
  // Workers hold their own reference, so close() during a step frees the engine when the step ends.
  std::shared_ptr<Engine> open(Napi::Env env) const {
    if (!engine_) throw Napi::Error::New(env, "the engine is closed");
    return engine_;
  }

  Napi::Value info(const Napi::CallbackInfo& info) { return engineInfoToJs(info.Env(), open(info.Env())->info()); }

  Napi::Value step(const Napi::CallbackInfo& info) {
    return startWork(info.Env(), [&] {
      std::shared_ptr<Engine> engine = open(info.Env());
      auto worker = std::make_unique<StepWorker>(info.Env(), std::move(engine), seqStepsFromJs(info[0]));
      worker->begin();
      return worker.release();
    });
  }

  Napi::Value loadAdapter(const Napi::CallbackInfo& info) {
    return startWork(info.Env(), [&] {
      std::shared_ptr<Engine> engine = open(info.Env());
      const int slot = slotAt(info[0]);
      std::vector<Napi::ObjectReference> keepAlive;
      AdapterRefs refs = adapterFromJs(info[1], keepAlive);
      engine->beginAdapterLoad(slot);
      return new AdapterLoadWorker(info.Env(), std::move(engine), slot, std::move(refs), std::move(keepAlive));
    });
  }

  void unloadAdapter(const Napi::CallbackInfo& info) { open(info.Env())->unloadAdapter(slotAt(info[0])); }

  void resumeFromIdle(const Napi::CallbackInfo& info) { open(info.Env())->resumeFromIdle(); }

  // A follower rank's whole life: resolves when the leader stops the group, rejects when the group fails.
  Napi::Value follow(const Napi::CallbackInfo& info) {
    return startWork(info.Env(), [&] {
      return new GroupWorker(info.Env(), open(info.Env()), [](Engine& engine) {
        engine.follow();
        return std::string();
      });
    });
  }

  // The leader's: resolves with why the group failed, or once the engine closes. Holds a libuv worker thread
  // for as long as it waits.
  Napi::Value watchGroup(const Napi::CallbackInfo& info) {
    return startWork(info.Env(), [&] {
      return new GroupWorker(info.Env(), open(info.Env()), [](Engine& engine) { return engine.waitUntilGroupFails(); });
    });
  }

  void close(const Napi::CallbackInfo&) {
    if (engine_) engine_->stopGroup();
    engine_.reset();
  }

  std::shared_ptr<Engine> engine_;
};

Napi::Value hasCuda(const Napi::CallbackInfo& info) {
#ifdef LORASERVE_WITH_CUDA
  return Napi::Boolean::New(info.Env(), true);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

}  // namespace

}  // namespace loraserve

// NODE_API_MODULE pastes the function's name into an identifier, so it must be a plain global name.
static Napi::Object initLoraserve(Napi::Env env, Napi::Object exports) {
  const Napi::Function engineClass = loraserve::EngineWrap::define(env);
  exports.Set("Engine", engineClass);
  exports.Set("contract", loraserve::contractToJs(env, engineClass));
  exports.Set("hasCuda", Napi::Function::New(env, loraserve::hasCuda, "hasCuda"));
  exports.Set("findNonFinite", Napi::Function::New(env, loraserve::findNonFinite, "findNonFinite"));
  return exports;
}

NODE_API_MODULE(loraserve_native, initLoraserve)
