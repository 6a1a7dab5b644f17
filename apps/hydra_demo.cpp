// hydra-demo: the foundation's end-to-end job. Trains a small byte-level language model (4-byte context,
// embeddings -> SwiGLU-free MLP -> 256 logits) on the shipped tinyshakespeare text with the tensor library and
// reverse-mode autograd only: embedding, matmul, RMSNorm, SiLU, fused cross-entropy, and an Adam update written
// with raw in-place ops. Prints the loss as it falls and a sample of generated text. (The HydraLM trainer,
// hydra-train, replaces this job in the training issue.)
//
// Usage: hydra-demo [--data FILE] [--steps N] [--batch B] [--seed S] [--lr LR]
#include <omp.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "tensor/cuda/backend.h"
#include "tensor/tensor.h"

using namespace hydra;

namespace {

constexpr int64_t kContext = 4, kEmbed = 32, kHidden = 192, kVocab = 256;

struct Options {
  std::string data = HYDRA_DEFAULT_DATA;
  int64_t steps = 1000, batch = 128;
  uint64_t seed = 1234;
  double lr = 3e-3;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      HYDRA_CHECK(i + 1 < argc, "hydra-demo: option {} needs a value", a);
      return argv[++i];
    };
    if (a == "--data") o.data = value();
    else if (a == "--steps") o.steps = std::stoll(value());
    else if (a == "--batch") o.batch = std::stoll(value());
    else if (a == "--seed") o.seed = std::stoull(value());
    else if (a == "--lr") o.lr = std::stod(value());
    else if (a == "--help" || a == "-h") {
      fmt::print("usage: hydra-demo [--data FILE] [--steps N] [--batch B] [--seed S] [--lr LR]\n");
      std::exit(0);
    } else {
      HYDRA_CHECK(false, "hydra-demo: unknown option '{}' (see --help)", a);
    }
  }
  HYDRA_CHECK(o.steps > 0 && o.batch > 0 && o.lr > 0, "hydra-demo: --steps, --batch and --lr must be positive");
  return o;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  HYDRA_CHECK_ENV(f.good(), "hydra-demo: cannot open data file '{}'", path);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  HYDRA_CHECK_ENV(static_cast<int64_t>(s.size()) > kContext + 1, "hydra-demo: data file '{}' is too short", path);
  return s;
}

struct Model {
  Tensor embed, w1, b1, norm_w, w2, b2;
  std::vector<Tensor> params() const { return {embed, w1, b1, norm_w, w2, b2}; }

  explicit Model(Generator& g) {
    auto init = [&](Shape s, double std) { return ag::set_requires_grad(mul(randn(s, g), std)); };
    embed = init({kVocab, kEmbed}, 0.1);
    w1 = init({kHidden, kContext * kEmbed}, 1.0 / std::sqrt(double(kContext * kEmbed)));
    b1 = ag::set_requires_grad(zeros({kHidden}));
    norm_w = ag::set_requires_grad(ones({kHidden}));
    w2 = init({kVocab, kHidden}, 1.0 / std::sqrt(double(kHidden)));
    b2 = ag::set_requires_grad(zeros({kVocab}));
  }

  // ids (B, kContext) int64 -> logits (B, 256)
  Tensor forward(const Tensor& ids) const {
    const int64_t B = ids.size(0);
    Tensor e = ag::reshape(ag::embedding(embed, ids), {B, kContext * kEmbed});
    Tensor h = ag::add(ag::matmul(e, w1, Trans::No, Trans::Yes), b1);
    h = ag::rms_norm(ag::silu(h), norm_w, 1e-5);
    return ag::add(ag::matmul(h, w2, Trans::No, Trans::Yes), b2);
  }
};

// Adam with bias correction, on raw tensors (no autograd): the optim layer arrives with the training issue.
struct Adam {
  std::vector<Tensor> m, v;
  double lr, b1 = 0.9, b2 = 0.99, eps = 1e-8;
  int64_t t = 0;
  void step(const std::vector<Tensor>& params) {
    ag::NoGradGuard no_grad;
    if (m.empty())
      for (const Tensor& p : params) m.push_back(zeros_like(p)), v.push_back(zeros_like(p));
    ++t;
    const double c1 = 1 - std::pow(b1, double(t)), c2 = 1 - std::pow(b2, double(t));
    for (std::size_t i = 0; i < params.size(); ++i) {
      Tensor g = ag::grad(params[i]);
      if (!g.defined()) continue;
      mul_(m[i], b1);
      add_(m[i], g, 1 - b1);
      mul_(v[i], b2);
      add_(v[i], square(g), 1 - b2);
      Tensor update = div(div(m[i], c1), add(sqrt(div(v[i], c2)), eps));
      Tensor p = params[i];
      add_(p, update, -lr);
      ag::zero_grad(params[i]);
    }
  }
};

// A batch of (context, next byte) pairs at random offsets.
void sample_batch(const std::string& text, int64_t begin, int64_t end, int64_t B, Generator& g, Tensor& ids,
                  Tensor& targets) {
  std::vector<int64_t> starts = randint(begin, end - kContext - 1, {B}, g).to_vector<int64_t>();
  std::vector<int64_t> x(B * kContext), y(B);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t j = 0; j < kContext; ++j) x[b * kContext + j] = static_cast<unsigned char>(text[starts[b] + j]);
    y[b] = static_cast<unsigned char>(text[starts[b] + kContext]);
  }
  ids = from_vector(x, {B, kContext});
  targets = from_vector(y, {B});
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options opt = parse(argc, argv);
    const std::string text = read_file(opt.data);
    const int64_t split = static_cast<int64_t>(text.size() * 0.9);
    fmt::print("hydra-demo: byte-level MLP language model on {} ({} bytes; 90/10 train/validation split)\n", opt.data,
               text.size());
    fmt::print("  CPU threads {}, CUDA: {} ({} device(s))\n", omp_get_max_threads(), cuda::runtime_version(),
               cuda::device_count());
    Generator g(opt.seed);
    Model model(g);
    int64_t nparams = 0;
    for (const Tensor& p : model.params()) nparams += p.numel();
    fmt::print("  model: context {} bytes, embed {}, hidden {}, {} parameters; Adam lr {}, batch {}, {} steps\n",
               kContext, kEmbed, kHidden, nparams, opt.lr, opt.batch, opt.steps);
    Adam adam;
    adam.lr = opt.lr;
    Generator data_gen(opt.seed + 1), val_gen(opt.seed + 2);
    Tensor val_ids, val_targets;
    sample_batch(text, split, static_cast<int64_t>(text.size()), 1024, val_gen, val_ids, val_targets);
    auto t0 = std::chrono::steady_clock::now();
    double first_loss = 0, last_loss = 0;
    for (int64_t step = 1; step <= opt.steps; ++step) {
      Tensor ids, targets;
      sample_batch(text, 0, split, opt.batch, data_gen, ids, targets);
      Tensor loss = ag::cross_entropy(model.forward(ids), targets);
      ag::backward(loss);
      adam.step(model.params());
      const double l = loss.item();
      if (step == 1) first_loss = l;
      last_loss = l;
      if (step == 1 || step % 50 == 0 || step == opt.steps) {
        ag::NoGradGuard no_grad;
        const double val = cross_entropy_forward(model.forward(val_ids), val_targets).loss.item();
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        fmt::print("  step {:4d}/{} | train loss {:.4f} | val loss {:.4f} | {:.1f} ms/step (mean)\n", step, opt.steps, l, val,
                   ms / step);
      }
    }
    // Sample 240 bytes: temperature 0.8 from the model's softmax, drawn with the Philox generator.
    ag::NoGradGuard no_grad;
    std::string out = text.substr(0, kContext);
    Generator sg(opt.seed + 3);
    for (int i = 0; i < 240; ++i) {
      std::vector<int64_t> ctx;
      for (int64_t j = 0; j < kContext; ++j)
        ctx.push_back(static_cast<unsigned char>(out[out.size() - kContext + j]));
      Tensor logits = model.forward(from_vector(ctx, {1, kContext}));
      std::vector<double> p = softmax(mul(logits.to(DType::Float64), 1.0 / 0.8), -1).to_vector<double>();
      double u = rand({1}, sg, DType::Float64).item(), acc = 0;
      int next = kVocab - 1;
      for (int k = 0; k < kVocab; ++k) {
        acc += p[k];
        if (u < acc) {
          next = k;
          break;
        }
      }
      out.push_back(static_cast<char>(next));
    }
    fmt::print("\nsample (temperature 0.8):\n{}\n\n", out);
    fmt::print("hydra-demo: train loss {:.4f} -> {:.4f} ({})\n", first_loss, last_loss,
               last_loss < 0.8 * first_loss ? "learning" : "NOT LEARNING");
    return last_loss < 0.8 * first_loss ? 0 : 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "hydra-demo: error: {}\n", e.what());
    return 1;
  }
}
