// The optimizer layer (SPEC §7.3–§7.7): AdamW and Muon against float64 references written out here, the §7.3 and
// §7.5 routing of every HydraLM parameter, the warmup+cosine factor, gradient clipping, a small training loop per
// optimizer, state export/import round trips and the error messages.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <vector>

#include "hydra/model.h"
#include "nn/layers.h"
#include "optim/optim.h"
#include "tests/test_util.h"

using namespace hydra;
using namespace hydra::test;
using namespace hydra::optim;

namespace {

// A float64 (or other dtype) leaf parameter with random values.
Tensor param(const Shape& shape, DType dt = DType::Float64) {
  Tensor p = randn_t(shape).to(dt);
  ag::set_requires_grad(p);
  return p;
}

std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

// ---- float64 scalar reference of SPEC §7.3 AdamW for one parameter ----
struct RefAdam {
  explicit RefAdam(std::vector<double> p0) : p(std::move(p0)) {}
  std::vector<double> p, m, v;
  int t = 0;
  void step(const std::vector<double>& g, double lr, double b1, double b2, double eps, double wd) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    ++t;
    for (std::size_t i = 0; i < p.size(); ++i) {
      p[i] = p[i] * (1.0 - lr * wd);
      m[i] = b1 * m[i] + (1.0 - b1) * g[i];
      v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
      p[i] = p[i] - (lr / (1.0 - std::pow(b1, t))) * m[i] / (std::sqrt(v[i]) / std::sqrt(1.0 - std::pow(b2, t)) + eps);
    }
  }
};

// ---- float64 reference of SPEC §7.4 NS on a row-major (r, c) matrix ----
std::vector<double> ref_matmul(const std::vector<double>& a, const std::vector<double>& b, int64_t n, int64_t k,
                               int64_t m) {  // (n,k)·(k,m)
  std::vector<double> out(static_cast<std::size_t>(n * m), 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (int64_t l = 0; l < k; ++l) s += a[i * k + l] * b[l * m + j];
      out[i * m + j] = s;
    }
  return out;
}
std::vector<double> ref_transpose(const std::vector<double>& a, int64_t r, int64_t c) {
  std::vector<double> out(a.size());
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) out[j * r + i] = a[i * c + j];
  return out;
}
std::vector<double> ref_ns(std::vector<double> x, int64_t r, int64_t c, int steps) {
  const bool tr = r > c;
  if (tr) x = ref_transpose(x, r, c), std::swap(r, c);
  double nrm = 0;
  for (double e : x) nrm += e * e;
  nrm = std::sqrt(nrm) + 1e-7;
  for (double& e : x) e /= nrm;
  for (int s = 0; s < steps; ++s) {
    const auto A = ref_matmul(x, ref_transpose(x, r, c), r, c, r);
    const auto AA = ref_matmul(A, A, r, r, r);
    std::vector<double> M(A.size());
    for (std::size_t i = 0; i < A.size(); ++i) M[i] = -4.7750 * A[i] + 2.0315 * AA[i];
    const auto MX = ref_matmul(M, x, r, r, c);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] = 3.4445 * x[i] + MX[i];
  }
  if (tr) x = ref_transpose(x, r, c);
  return x;
}

// Mean squared error of a linear layer on (x, y).
Tensor mse(const nn::Linear& lin, const Tensor& x, const Tensor& y) {
  return ag::mean(ag::square(ag::sub(lin.forward(x), y)));
}

// Trains `lin` on a random linear regression for `steps` steps; returns the losses before each step.
std::vector<double> train(nn::Linear& lin, Optimizer& opt, const Tensor& x, const Tensor& y, int steps) {
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    Tensor loss = mse(lin, x, y);
    losses.push_back(loss.item());
    ag::backward(loss);
    opt.step();
  }
  return losses;
}

hydra::HydraConfig small_config() {
  hydra::HydraConfig cfg;
  cfg.vocab_size = 50;
  cfg.d_model = 32;
  cfg.n_layers = 4;
  cfg.n_heads = 2;
  cfg.swa_every = 2;
  cfg.retrieval_every = 3;
  cfg.mtp_depth = 1;
  cfg.tie_embeddings = false;
  return cfg;
}

bool ends_with(const std::string& s, const std::string& x) {
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}
bool contains(const std::string& s, const std::string& x) { return s.find(x) != std::string::npos; }

}  // namespace

TEST_CASE("adamw matches the float64 SPEC reference over several steps with weight decay") {
  Tensor a = param({3, 4}), b = param({4});
  AdamWGroup ga{"decay", {{"a", a}}, 1e-2, 0.9, 0.95, 1e-8, 0.1};
  AdamWGroup gb{"no_decay", {{"b", b}}, 2e-2, 0.8, 0.99, 1e-6, 0.0};
  AdamW opt({ga, gb});
  RefAdam ra{vals(a)}, rb{vals(b)};
  const std::vector<double> factors{1.0, 0.5, 0.25, 0.75};
  for (int s = 0; s < 4; ++s) {
    opt.set_lr_factor(factors[s]);
    Tensor g_a = randn_t({3, 4}), g_b = randn_t({4});
    ag::set_grad(a, g_a);
    ra.step(vals(g_a), 1e-2 * factors[s], 0.9, 0.95, 1e-8, 0.1);
    if (s != 2) {  // step 2: b has no gradient and is skipped (its own step count lags)
      ag::set_grad(b, g_b);
      rb.step(vals(g_b), 2e-2 * factors[s], 0.8, 0.99, 1e-6, 0.0);
    } else {
      ag::zero_grad(b);
    }
    opt.step();
    const auto pa = vals(a), pb = vals(b);
    for (std::size_t i = 0; i < pa.size(); ++i) CHECK(std::abs(pa[i] - ra.p[i]) <= 1e-12 * (1 + std::abs(ra.p[i])));
    for (std::size_t i = 0; i < pb.size(); ++i) CHECK(std::abs(pb[i] - rb.p[i]) <= 1e-12 * (1 + std::abs(rb.p[i])));
  }
  CHECK(opt.step_count() == 4);
  const StateDict st = opt.state_dict();
  CHECK(st.at("a.step").item() == 4);
  CHECK(st.at("b.step").item() == 3);
  CHECK(st.at("_step").item() == 4);
  const auto m = vals(st.at("a.exp_avg"));
  for (std::size_t i = 0; i < m.size(); ++i) CHECK(std::abs(m[i] - ra.m[i]) <= 1e-14);
  CHECK(st.at("a.exp_avg").dtype() == DType::Float64);
}

TEST_CASE("adamw float32 parameters keep float32 state and follow the reference") {
  Tensor a = param({5, 3}, DType::Float32);
  AdamW opt(adamw_param_groups({{"w", a}}, AdamWOptions{1e-2, 0.9, 0.95, 1e-8, 0.1}));
  RefAdam ra{vals(a)};
  for (int s = 0; s < 3; ++s) {
    Tensor g = randn_t({5, 3}).to(DType::Float32);
    ag::set_grad(a, g);
    ra.step(vals(g), 1e-2, 0.9, 0.95, 1e-8, 0.1);
    opt.step();
  }
  check_close(a, from_vector(ra.p, {5, 3}), "adamw float32");
  CHECK(opt.state_dict().at("w.exp_avg").dtype() == DType::Float32);
}

TEST_CASE("grouping of every HydraLM parameter under plain adamw and the hybrid router") {
  const hydra::HydraConfig cfg = small_config();
  hydra::HydraLM model(cfg, 1);
  const nn::NamedTensors named = model.named_parameters();
  REQUIRE(named.size() > 20);
  const auto groups = adamw_param_groups(named, AdamWOptions{});
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].name == "decay");
  CHECK(groups[0].weight_decay == doctest::Approx(0.1));
  CHECK(groups[1].weight_decay == 0.0);
  CHECK(groups[0].params.size() + groups[1].params.size() == named.size());
  auto in_group = [&](const AdamWGroup& g, const std::string& n) {
    return std::any_of(g.params.begin(), g.params.end(), [&](const auto& kv) { return kv.first == n; });
  };
  const auto routes = hybrid_routes(named);
  REQUIRE(routes.size() == named.size());
  int n_muon = 0, n_conv = 0;
  for (std::size_t i = 0; i < named.size(); ++i) {
    const std::string& n = named[i].first;
    const Tensor& p = named[i].second;
    INFO(n << " " << shape_str(p.shape()));
    CHECK(routes[i].first == n);
    const bool no_decay_name = contains(n, "norm") || ends_with(n, ".bias") || n == "embed.weight";
    // §7.3: norms, biases and embed.weight are no-decay; every other weight decays (lm_head and the 3-D conv too)
    CHECK(in_group(groups[0], n) == !no_decay_name);
    CHECK(in_group(groups[1], n) == no_decay_name);
    // §7.5
    HybridRoute want;
    if (n == "embed.weight" || n == "lm_head.weight") want = HybridRoute::AdamWDecay;
    else if (contains(n, "norm") || ends_with(n, ".bias")) want = HybridRoute::AdamWNoDecay;
    else want = HybridRoute::Muon;
    CHECK(routes[i].second == want);
    if (want == HybridRoute::Muon) ++n_muon;
    if (ends_with(n, "short_conv.conv.weight")) {
      ++n_conv;
      const int64_t I = cfg.inner_dim(), K = cfg.dn_short_conv_kernel;
      CHECK(p.dim() == 3);
      CHECK(muon_lr_scale(p.shape()) == doctest::Approx(std::sqrt(3.0 * I / K)));
    }
  }
  CHECK(n_conv == 1);
  auto route_of = [&](const std::string& n) {
    for (const auto& [k, r] : routes)
      if (k == n) return std::string(hybrid_route_name(r));
    return std::string("absent");
  };
  CHECK(route_of("embed.weight") == "adamw_decay");
  CHECK(route_of("lm_head.weight") == "adamw_decay");
  CHECK(route_of("norm_f.weight") == "adamw_no_decay");
  CHECK(route_of("blocks.0.mixer.ab_proj.bias") == "adamw_no_decay");
  CHECK(route_of("blocks.0.mixer.short_conv.conv.bias") == "adamw_no_decay");
  CHECK(route_of("blocks.0.mixer.short_conv.conv.weight") == "muon");
  CHECK(route_of("blocks.0.mixer.ab_proj.weight") == "muon");
  CHECK(route_of("blocks.1.mlp.w_down.weight") == "muon");
  CHECK(route_of("blocks.2.mixer.qkv_proj.weight") == "muon");  // retrieval layer (p = 3)
  CHECK(route_of("mtp_heads.0.proj.weight") == "muon");
  CHECK(route_of("mtp_heads.0.norm.weight") == "adamw_no_decay");
  CHECK(adamw_decays("lm_head.weight", model.lm_head->weight));
  CHECK_FALSE(adamw_decays("embed.weight", model.embed.weight));
  // w_fused factor sqrt(2F/d)
  const Tensor wf = model.state_dict().at("blocks.0.mlp.w_fused.weight");
  CHECK(muon_lr_scale(wf.shape()) == doctest::Approx(std::sqrt(2.0 * cfg.mlp_hidden_dim() / cfg.d_model)));
  // the hybrid optimizer holds exactly the routed parameters
  HybridMuonAdamW hyb(named, HybridOptions{});
  CHECK(static_cast<int>(hyb.muon().groups().at(0).params.size()) == n_muon);
  CHECK(hyb.adamw().groups().at(0).params.size() == 2);  // embed, lm_head
}

TEST_CASE("newton-schulz output is near-orthogonal and matches the float64 reference") {
  const int64_t r = 32, c = 16;
  Tensor G = randn_t({r, c}).to(DType::Float32);
  Tensor O = newton_schulz(G, 5);
  CHECK(O.dtype() == DType::Float32);
  CHECK(O.shape() == Shape{r, c});
  Tensor OtO = matmul(O.to(DType::Float64), O.to(DType::Float64), Trans::Yes, Trans::No);  // (c, c)
  const auto v = vals(OtO);
  double max_diag = 0, max_off = 0;
  for (int64_t i = 0; i < c; ++i)
    for (int64_t j = 0; j < c; ++j) {
      const double e = v[i * c + j] - (i == j ? 1.0 : 0.0);
      (i == j ? max_diag : max_off) = std::max(i == j ? max_diag : max_off, std::abs(e));
    }
  MESSAGE("NS 32x16: max |diag(OtO) - 1| = " << max_diag << ", max |offdiag| = " << max_off);
  // The quintic leaves singular values in about [0.7, 1.2] rather than at 1 (σ² in about [0.45, 1.45]), so OᵀO
  // = V·diag(σ²)·Vᵀ is only loosely I. Measured over 150 random 32×16 inputs: max |diag − 1| 0.46, max |off| 0.26.
  CHECK(max_diag < 0.6);
  CHECK(max_off < 0.4);
  const auto ref = ref_ns(vals(G), r, c, 5);
  check_close(O, from_vector(ref, {r, c}), kTolF32, "NS vs float64 reference");
  // wide input (no transpose) and a float64 input (NS still in float32, cast back)
  Tensor W = randn_t({8, 20});
  Tensor OW = newton_schulz(W, 5);
  CHECK(OW.dtype() == DType::Float64);
  check_close(OW, from_vector(ref_ns(vals(W), 8, 20, 5), {8, 20}), kTolF32, "NS wide");
}

TEST_CASE("muon update matches the float64 reference for a 3-D and a 2-D parameter") {
  Tensor conv = param({6, 1, 4}), w = param({5, 8});
  const double lr = 2e-2, mu = 0.9, wd = 0.01;
  for (bool nesterov : {true, false}) {
    INFO("nesterov " << nesterov);
    Tensor c0 = conv.clone(), w0 = w.clone();
    Muon opt({MuonGroup{"muon", {{"conv", conv}, {"w", w}}, lr, mu, nesterov, 5, wd, true}});
    std::vector<double> pc = vals(conv), pw = vals(w), bc(pc.size(), 0.0), bw(pw.size(), 0.0);
    auto ref_step = [&](std::vector<double>& p, std::vector<double>& buf, const std::vector<double>& g, int64_t r,
                        int64_t cc) {
      std::vector<double> U(p.size());
      for (std::size_t i = 0; i < p.size(); ++i) {
        buf[i] = mu * buf[i] + g[i];
        U[i] = nesterov ? g[i] + mu * buf[i] : buf[i];
      }
      const auto O = ref_ns(U, r, cc, 5);
      const double eta = lr * std::sqrt(std::max(1.0, double(r) / double(std::max<int64_t>(1, cc))));
      for (std::size_t i = 0; i < p.size(); ++i) p[i] = p[i] * (1 - eta * wd) - eta * O[i];
    };
    for (int s = 0; s < 3; ++s) {
      Tensor gc = randn_t({6, 1, 4}), gw = randn_t({5, 8});
      ag::set_grad(conv, gc);
      ag::set_grad(w, gw);
      opt.step();
      ref_step(pc, bc, vals(gc), 6, 4);
      ref_step(pw, bw, vals(gw), 5, 8);
    }
    // compare the total change (NS runs in float32, so the float32 tolerance applies to the update)
    check_close(sub(conv, c0), sub(from_vector(pc, {6, 1, 4}), c0), kTolF32, "muon conv update");
    check_close(sub(w, w0), sub(from_vector(pw, {5, 8}), w0), kTolF32, "muon 2-D update");
    const auto buf = vals(opt.state_dict().at("w.momentum_buffer"));
    for (std::size_t i = 0; i < buf.size(); ++i) CHECK(std::abs(buf[i] - bw[i]) <= 1e-12);
  }
  CHECK(muon_lr_scale({6, 1, 4}) == doctest::Approx(std::sqrt(1.5)));
  CHECK(muon_lr_scale({4, 8}) == 1.0);
}

TEST_CASE("warmup cosine schedule values") {
  const int64_t warmup = 10, steps = 110;
  const double lr = 1e-3, min_lr = 1e-4, rho = 0.1;
  CHECK(warmup_cosine_factor(0, warmup, steps, lr, min_lr) == 0.0);
  CHECK(warmup_cosine_factor(5, warmup, steps, lr, min_lr) == doctest::Approx(0.5));
  CHECK(warmup_cosine_factor(10, warmup, steps, lr, min_lr) == doctest::Approx(1.0));
  CHECK(warmup_cosine_factor(60, warmup, steps, lr, min_lr) == doctest::Approx(rho + (1 - rho) * 0.5));
  CHECK(warmup_cosine_factor(35, warmup, steps, lr, min_lr) ==
        doctest::Approx(rho + (1 - rho) * 0.5 * (1 + std::cos(std::numbers::pi * 0.25))));
  CHECK(warmup_cosine_factor(110, warmup, steps, lr, min_lr) == doctest::Approx(rho));
  CHECK(warmup_cosine_factor(500, warmup, steps, lr, min_lr) == doctest::Approx(rho));
  CHECK(warmup_cosine_factor(0, 0, steps, lr, min_lr) == doctest::Approx(1.0));  // no warmup
  check_throws_with([] { warmup_cosine_factor(0, 1, 2, 0.0, 0.0); }, {"warmup_cosine_factor", "lr > 0"});

  // the scheduler object drives an optimizer: first step at lr 0, moments still updated
  Tensor a = param({2, 2});
  const Tensor a0 = a.clone();
  AdamW opt({AdamWGroup{"decay", {{"a", a}}, lr, 0.9, 0.95, 1e-8, 0.1}});
  WarmupCosineSchedule sched(opt, warmup, steps, lr, min_lr);
  CHECK(opt.current_lr(0) == 0.0);
  ag::set_grad(a, randn_t({2, 2}));
  opt.step();
  sched.step();
  CHECK(vals(a) == vals(a0));
  CHECK(vals(opt.state_dict().at("a.exp_avg")) != std::vector<double>(4, 0.0));
  CHECK(opt.current_lr(0) == doctest::Approx(lr * 0.1));
  sched.set_steps_taken(500);
  CHECK(opt.current_lr(0) == doctest::Approx(min_lr));
}

TEST_CASE("clip_grad_norm returns the total norm and scales when above max_norm") {
  Tensor a = param({3, 2}), b = param({4}), c = param({2});  // c has no gradient
  Tensor ga = randn_t({3, 2}), gb = randn_t({4});
  double sq = 0;
  for (double e : vals(ga)) sq += e * e;
  for (double e : vals(gb)) sq += e * e;
  const double total = std::sqrt(sq);
  ag::set_grad(a, ga.clone());
  ag::set_grad(b, gb.clone());
  // a large max_norm: nothing changes; a listed twice counts once
  CHECK(clip_grad_norm({a, b, c, a}, total * 10) == doctest::Approx(total).epsilon(1e-12));
  CHECK(vals(ag::grad(a)) == vals(ga));
  // a small one: every gradient scaled by max_norm / (total + 1e-6)
  const double max_norm = total / 4;
  CHECK(clip_grad_norm({a, b, c}, max_norm) == doctest::Approx(total).epsilon(1e-12));
  const double coef = max_norm / (total + 1e-6);
  check_close(ag::grad(a), mul(ga, coef), kTolF64, "clipped a");
  check_close(ag::grad(b), mul(gb, coef), kTolF64, "clipped b");
  CHECK(clip_grad_norm({a, b}, 1e9) == doctest::Approx(max_norm * total / (total + 1e-6)).epsilon(1e-10));
  CHECK_FALSE(ag::grad(c).defined());
}

TEST_CASE("a small linear regression trains with adamw muon and the hybrid") {
  Generator gen(fresh_generator());
  Tensor x = randn({64, 16}, gen), w_true = randn({8, 16}, gen);
  Tensor y = add(matmul(x, w_true, Trans::No, Trans::Yes), 0.5);
  for (const char* which : {"adamw", "hybrid", "muon"}) {
    INFO(std::string(which));
    Generator init(fresh_generator());
    nn::Linear lin(16, 8, true, init);
    std::unique_ptr<Optimizer> opt;
    if (std::string(which) == "adamw") {
      opt = std::make_unique<AdamW>(adamw_param_groups(lin.named_parameters(), AdamWOptions{5e-2, 0.9, 0.95, 1e-8, 0.0}));
    } else if (std::string(which) == "hybrid") {
      HybridOptions o;
      o.muon_lr = 0.2;
      o.adamw_lr = 5e-2;
      opt = std::make_unique<HybridMuonAdamW>(lin.named_parameters(), o);
    } else {
      opt = std::make_unique<Muon>(std::vector<MuonGroup>{MuonGroup{"w", {{"weight", lin.weight}}, 0.2}});
    }
    const auto losses = train(lin, *opt, x, y, 60);
    MESSAGE(std::string(which) << ": loss " << losses.front() << " -> " << losses.back());
    CHECK(losses.back() < 0.2 * losses.front());
    CHECK(losses[10] < losses.front());
  }
}

TEST_CASE("state export and import give bit-identical continued steps") {
  for (const char* which : {"adamw", "muon", "hybrid"}) {
    INFO(std::string(which));
    Generator g1(123), g2(456);
    nn::Linear l1(6, 5, true, g1), l2(6, 5, true, g2);
    l2.load_state_dict(l1.state_dict());
    auto make = [&](nn::Linear& l) -> std::unique_ptr<Optimizer> {
      const std::string w = which;
      if (w == "adamw") return std::make_unique<AdamW>(adamw_param_groups(l.named_parameters(), AdamWOptions{}));
      if (w == "muon") return std::make_unique<Muon>(std::vector<MuonGroup>{MuonGroup{"m", {{"weight", l.weight}}}});
      return std::make_unique<HybridMuonAdamW>(l.named_parameters(), HybridOptions{});
    };
    auto o1 = make(l1);
    std::vector<std::pair<Tensor, Tensor>> grads;
    for (int s = 0; s < 5; ++s) grads.emplace_back(randn_t({5, 6}).to(DType::Float32), randn_t({5}).to(DType::Float32));
    for (int s = 0; s < 3; ++s) {
      ag::set_grad(l1.weight, grads[s].first);
      ag::set_grad(l1.bias, grads[s].second);
      o1->set_lr_factor(0.5 + 0.1 * s);
      o1->step();
    }
    const StateDict st = o1->state_dict();
    l2.load_state_dict(l1.state_dict());
    auto o2 = make(l2);
    o2->load_state_dict(st);
    CHECK(o2->step_count() == 3);
    for (int s = 3; s < 5; ++s) {
      for (auto* pr : {&l1, &l2}) {
        ag::set_grad(pr->weight, grads[s].first.clone());
        ag::set_grad(pr->bias, grads[s].second.clone());
      }
      o1->set_lr_factor(0.7);
      o2->set_lr_factor(0.7);
      o1->step();
      o2->step();
    }
    CHECK(l1.weight.to_vector<float>() == l2.weight.to_vector<float>());
    CHECK(l1.bias.to_vector<float>() == l2.bias.to_vector<float>());
    // the exported state is a copy: later steps did not change it
    const StateDict st2 = o1->state_dict();
    CHECK(st2.size() == st.size());
    CHECK(st2.at(std::string(which) == "hybrid" ? "muon._step" : "_step").item() == 5);
    CHECK(st.at(std::string(which) == "hybrid" ? "muon._step" : "_step").item() == 3);
  }
}

TEST_CASE("optimizer errors name the parameter or the state entry") {
  Tensor bias = param({4}), w = param({3, 4});
  check_throws_with([&] { Muon({MuonGroup{"m", {{"blocks.0.norm1.weight", bias}}}}); },
                    {"Muon", "blocks.0.norm1.weight", "[4]", "ndim >= 2"});
  check_throws_with([&] { AdamW({AdamWGroup{"g", {{"w", w}, {"w", bias}}}}); }, {"AdamW", "'w'", "twice"});

  AdamW opt(adamw_param_groups({{"w", w}, {"b", bias}}, AdamWOptions{}));
  StateDict st = opt.state_dict();
  StateDict missing = st;
  missing.erase("w.exp_avg_sq");
  check_throws_with([&] { opt.load_state_dict(missing); }, {"AdamW", "missing entry 'w.exp_avg_sq'"});
  StateDict bad_shape = st;
  bad_shape["b.exp_avg"] = zeros({5}, DType::Float64);
  bad_shape["extra.exp_avg"] = zeros({1});
  check_throws_with([&] { opt.load_state_dict(bad_shape); },
                    {"'b.exp_avg' has shape [5], expected [4]", "unexpected entry 'extra.exp_avg'"});

  Muon m({MuonGroup{"m", {{"w", w}}}});
  StateDict ms = m.state_dict();
  ms.erase("_step");
  check_throws_with([&] { m.load_state_dict(ms); }, {"Muon", "missing entry '_step'"});

  HybridMuonAdamW hyb({{"w", w}, {"b", bias}}, HybridOptions{});
  StateDict hs = hyb.state_dict();
  CHECK(hs.count("muon.w.momentum_buffer") == 1);
  CHECK(hs.count("adamw.b.exp_avg") == 1);
  hs.erase("adamw.b.step");
  check_throws_with([&] { hyb.load_state_dict(hs); }, {"AdamW", "missing entry 'b.step'"});
  hs = hyb.state_dict();
  hs["other.x"] = zeros({1});
  check_throws_with([&] { hyb.load_state_dict(hs); }, {"HybridMuonAdamW", "unexpected entry 'other.x'"});
}
