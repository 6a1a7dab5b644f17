#pragma once
// Training data (training issue): token sources and random training windows.
//
// A TokenSource is a flat sequence of token ids:
//  * text files, byte-level: every byte is one id (vocab 256);
//  * token files, memory-mapped, little-endian:
//      - raw uint16 or uint32 ids (the nanoGPT convention; the dtype comes from the config),
//      - the llm.c format, recognised by its magic: a header of 256 int32 (header[0] = 20240520, header[1] = 1,
//        header[2] = number of tokens) followed by that many uint16 ids.
//    A file whose size does not match its format is an error naming the file, the size and what was expected.
//
// Splits are deterministic: the last `val_fraction` of the tokens (at least one window's worth) is validation, the
// rest training. A WindowSampler draws windows of seq_len + 1 consecutive ids with uniformly random starts inside
// its split, from a Philox generator (seed, counter), so the stream of batches is reproducible and resumable from
// (seed, offset). Every id is checked against the vocabulary size when its window is drawn: an id ≥ vocab is an
// error naming the file, the byte offset and the id.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tensor/random.h"
#include "tensor/tensor_core.h"

namespace hydra::train {

enum class TokenDType { UInt16, UInt32 };
TokenDType parse_token_dtype(const std::string& name);  // "uint16" | "uint32"

class TokenSource {
 public:
  static TokenSource from_text_file(const std::string& path);
  static TokenSource from_token_file(const std::string& path, TokenDType dtype);
  static TokenSource from_bytes(std::string bytes, const std::string& name);  // in-memory text (tests, embedded data)

  int64_t size() const { return n_; }
  int64_t at(int64_t i) const;
  const std::string& path() const { return path_; }
  const char* format() const { return format_; }  // "text", "uint16", "uint32" or "llm.c"
  int64_t byte_offset(int64_t i) const { return data_offset_ + i * width_; }  // of token i in the file

 private:
  struct Mapping;
  std::shared_ptr<Mapping> map_;  // owns the bytes (mmap or string)
  const unsigned char* data_ = nullptr;
  int64_t n_ = 0, width_ = 1, data_offset_ = 0;
  std::string path_;
  const char* format_ = "text";
};

struct Split {
  int64_t begin = 0, end = 0;  // token range [begin, end)
};
// {train, validation}: validation = the last max(seq_len + 1, ⌊size · val_fraction⌋) tokens when val_fraction > 0.
// Throws when either part is shorter than one window (seq_len + 1), naming the source and the sizes.
std::pair<Split, Split> train_val_split(const TokenSource& src, double val_fraction, int64_t seq_len);

// A training batch. For text and token files: input_ids (B, seq_len + 1), the loss is next-token prediction over
// them. For synthetic tasks (SPEC §8): input_ids (B, N) and labels (B, N) where the label at t is the target of
// the logits at t (−100 = no target); every labelled position is listed in `positions` (sorted, the same for every
// row), so the loss needs logits at those positions only.
struct Batch {
  Tensor input_ids;
  Tensor labels;                   // undefined: next-token prediction over input_ids
  std::vector<int64_t> positions;  // with labels: the positions that can carry a label
};

// A reproducible, resumable stream of training batches.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual Batch next(int64_t batch) = 0;
  // Generator position, for checkpoints: restoring (seed, offset) resumes the same stream.
  virtual uint64_t seed() const = 0;
  virtual uint64_t offset() const = 0;
  virtual void set_state(uint64_t seed, uint64_t offset) = 0;
};

class WindowSampler : public BatchSource {
 public:
  WindowSampler(std::shared_ptr<const TokenSource> src, Split split, int64_t seq_len, int64_t vocab, uint64_t seed);
  // int64 (batch, seq_len + 1) on the CPU.
  Tensor next_batch(int64_t batch);
  Batch next(int64_t batch) override { return {next_batch(batch), {}, {}}; }
  // A window starting at token `start` (absolute index), checked like the random ones.
  Tensor window(int64_t start) const;
  // Generator position, for checkpoints: restoring (seed, offset) resumes the same stream.
  uint64_t seed() const override { return gen_.seed(); }
  uint64_t offset() const override { return gen_.offset(); }
  void set_state(uint64_t seed, uint64_t offset) override { gen_.set_state(seed, offset); }
  const Split& split() const { return split_; }

 private:
  void fill(int64_t start, int64_t* out) const;
  std::shared_ptr<const TokenSource> src_;
  Split split_;
  int64_t seq_len_, vocab_;
  Generator gen_;
};

}  // namespace hydra::train
