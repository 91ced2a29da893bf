// Which slice of every weight one tensor-parallel rank holds. Column-parallel projections (q, k, v, gate, up)
// keep a range of output rows: whole attention heads for q/k/v, a range of the intermediate size for gate/up.
// Row-parallel projections (o, down) keep the matching range of input columns, so each rank's partial output
// sums to the full one in the all-reduce. LoRA follows the base: column-parallel targets split B's rows and
// keep A whole; row-parallel targets split A's columns and keep B whole. With more ranks than KV heads each
// rank keeps the one KV head its query heads read (replicated). The embedding and the output projection are
// split by vocabulary rows: ceil(vocab / world) a rank, the last one shorter.
#pragma once

#include <cstdint>

#include "lora_target.h"
#include "model_spec.h"
#include "safetensors_view.h"

namespace loraserve {

struct TargetShape {
  int64_t in = 0;
  int64_t out = 0;
};

// A target's full (unsliced) [out, in] shape.
TargetShape fullTargetShape(const ModelSpec& spec, LoraTarget target);

bool isRowParallel(LoraTarget target);

class ShardLayout {
 public:
  // Throws unless 0 <= rank < world and the heads and intermediate size divide by world, and the KV heads divide
  // by world or world by them; the message names the dimension and the group sizes that work.
  ShardLayout(const ModelSpec& spec, int rank, int world);

  int rank() const { return rank_; }
  int world() const { return world_; }
  int localHeads() const { return localHeads_; }
  int localKvHeads() const { return localKvHeads_; }
  int64_t localIntermediate() const { return localIntermediate_; }
  // This rank's rows of the embedding and of the output projection.
  IndexRange vocabRows() const;
  // vocabRows().size() on every rank but the last: what each rank contributes to the gathered logits.
  int64_t vocabPerRank() const { return vocabPerRank_; }

  // This rank's rows of the target's output (all rows for row-parallel targets).
  IndexRange outputRows(LoraTarget target) const;
  // This rank's columns of the target's input (all columns for column-parallel targets).
  IndexRange inputColumns(LoraTarget target) const;
  TargetShape localShape(LoraTarget target) const;

 private:
  // The range of the dimension that this target splits (output rows or input columns).
  IndexRange splitRange(LoraTarget target) const;

  ModelSpec spec_;
  int rank_;
  int world_;
  int localHeads_;
  int localKvHeads_;
  int firstKvHead_;
  int64_t vocabPerRank_;
  int64_t localIntermediate_;
};

}  // namespace loraserve
