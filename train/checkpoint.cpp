// Training checkpoints: atomic step folders with SHA-256 checksums (checkpoint.h).
#include "train/checkpoint.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hydra/model.h"
#include "nn/safetensors.h"
#include "tensor/check.h"

namespace hydra::train {

namespace fs = std::filesystem;

// ---- SHA-256 (FIPS 180-4) ---------------------------------------------------------------------------------
namespace {

constexpr std::array<uint32_t, 64> kK = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

class Sha256 {
 public:
  void update(const unsigned char* p, size_t n) {
    total_ += n;
    if (fill_) {
      const size_t take = std::min(n, size_t{64} - fill_);
      std::memcpy(buf_ + fill_, p, take);
      fill_ += take;
      p += take;
      n -= take;
      if (fill_ == 64) {
        block(buf_);
        fill_ = 0;
      }
    }
    for (; n >= 64; p += 64, n -= 64) block(p);
    if (n) {
      std::memcpy(buf_, p, n);
      fill_ = n;
    }
  }
  std::string hex() {
    const uint64_t bits = total_ * 8;
    const unsigned char one = 0x80, zero = 0;
    update(&one, 1);
    while (fill_ != 56) update(&zero, 1);
    unsigned char len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(bits >> (56 - 8 * i));
    update(len, 8);
    std::string s;
    for (uint32_t v : h_) s += fmt::format("{:08x}", v);
    return s;
  }

 private:
  void block(const unsigned char* p) {
    uint32_t w[64];
    for (int i = 0; i < 16; ++i)
      w[i] = (uint32_t{p[4 * i]} << 24) | (uint32_t{p[4 * i + 1]} << 16) | (uint32_t{p[4 * i + 2]} << 8) | p[4 * i + 3];
    for (int i = 16; i < 64; ++i) {
      const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
      const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h_[0], b = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
    for (int i = 0; i < 64; ++i) {
      const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + kK[i] + w[i];
      const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      h = g;
      g = f;
      f = e;
      e = d + t1;
      d = c;
      c = b;
      b = a;
      a = t1 + t2;
    }
    h_[0] += a, h_[1] += b, h_[2] += c, h_[3] += d, h_[4] += e, h_[5] += f, h_[6] += g, h_[7] += h;
  }
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char buf_[64];
  size_t fill_ = 0;
  uint64_t total_ = 0;
};

void fsync_path(const fs::path& p, bool directory) {
  const int fd = ::open(p.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  HYDRA_CHECK_ENV(fd >= 0, "cannot open '{}' to sync it: {}", p.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  ::close(fd);
  HYDRA_CHECK_ENV(rc == 0, "fsync of '{}' failed: {}", p.string(), std::strerror(errno));
}

void write_text_file(const fs::path& p, const std::string& text) {
  {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    HYDRA_CHECK_ENV(out.good(), "cannot create '{}'", p.string());
    out << text;
    out.flush();
    HYDRA_CHECK_ENV(out.good(), "writing '{}' failed (disk full?)", p.string());
  }
  fsync_path(p, false);
}


const char* const kFiles[] = {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "config.yaml"};

}  // namespace

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HYDRA_CHECK_ENV(in.good(), "cannot open '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text_file_atomic(const std::string& path, const std::string& text) {
  const fs::path tmp = path + ".tmp";
  write_text_file(tmp, text);
  fs::rename(tmp, path);
}

std::string sha256_hex(const void* data, size_t n) {
  Sha256 h;
  h.update(static_cast<const unsigned char*>(data), n);
  return h.hex();
}

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  HYDRA_CHECK_ENV(in.good(), "cannot open '{}'", path);
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto got = in.gcount();
    if (got > 0) h.update(reinterpret_cast<const unsigned char*>(buf.data()), static_cast<size_t>(got));
  }
  HYDRA_CHECK_ENV(in.eof(), "reading '{}' failed", path);
  return h.hex();
}

// ---- trainer state ----------------------------------------------------------------------------------------

std::string TrainerState::to_json() const {
  return fmt::format(
      "{{\n  \"step\": {},\n  \"tokens\": {},\n  \"data_seed\": {},\n  \"data_offset\": {},\n"
      "  \"schedule_steps\": {},\n  \"elapsed_s\": {}\n}}\n",
      step, tokens, data_seed, data_offset, schedule_steps, elapsed_s);
}

TrainerState TrainerState::from_json(const std::string& text, const std::string& source) {
  YAML::Node j;
  try {
    j = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    HYDRA_CHECK_ENV(false, "{}: unparsable JSON: {}", source, e.msg);
  }
  HYDRA_CHECK_ENV(j.IsMap(), "{}: expected a JSON object", source);
  TrainerState s;
  auto get = [&](const char* key, auto& out) {
    const YAML::Node v = j[key];
    HYDRA_CHECK_ENV(v.IsDefined() && v.IsScalar(), "{}: missing or invalid '{}'", source, key);
    try {
      out = v.as<std::decay_t<decltype(out)>>();
    } catch (const YAML::Exception&) {
      HYDRA_CHECK_ENV(false, "{}: '{}' has an invalid value '{}'", source, key, v.Scalar());
    }
  };
  get("step", s.step);
  get("tokens", s.tokens);
  get("data_seed", s.data_seed);
  get("data_offset", s.data_offset);
  get("schedule_steps", s.schedule_steps);
  get("elapsed_s", s.elapsed_s);
  return s;
}

// ---- writing ----------------------------------------------------------------------------------------------

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& run_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  const fs::path root = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) return out;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("step-", 0) != 0) continue;
    const std::string num = name.substr(5);
    if (num.empty() || num.find_first_not_of("0123456789") != std::string::npos) continue;
    out.emplace_back(std::stoll(num), e.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

std::string write_checkpoint(const std::string& run_dir, const Checkpoint& ck, int64_t keep) {
  HYDRA_CHECK(keep >= 1, "write_checkpoint: keep must be ≥ 1, got {}", keep);
  const fs::path root = fs::path(run_dir) / "checkpoints";
  fs::create_directories(root);
  // Leftovers of an interrupted write are never loaded; clear them.
  for (const auto& e : fs::directory_iterator(root))
    if (e.path().filename().string().rfind(".tmp-step-", 0) == 0) fs::remove_all(e.path());

  const std::string name = fmt::format("step-{}", ck.state.step);
  const fs::path tmp = root / fmt::format(".tmp-{}-{}", name, ::getpid());
  fs::create_directories(tmp);
  save_safetensors((tmp / "model.safetensors").string(), ck.model, {{"format", "pt"}});
  save_safetensors((tmp / "optimizer.safetensors").string(), ck.optimizer);
  write_text_file(tmp / "trainer_state.json", ck.state.to_json());
  write_text_file(tmp / "config.yaml", ck.config_yaml);
  std::string sums;
  for (const char* f : kFiles) sums += fmt::format("{}  {}\n", sha256_file((tmp / f).string()), f);
  write_text_file(tmp / "SHA256SUMS", sums);
  fsync_path(tmp, true);

  const fs::path target = root / name;
  std::error_code ec;
  if (fs::exists(target, ec)) fs::remove_all(target);
  fs::rename(tmp, target);
  fsync_path(root, true);

  auto all = list_checkpoints(run_dir);
  for (size_t i = static_cast<size_t>(keep); i < all.size(); ++i) fs::remove_all(all[i].second);
  return target.string();
}

// ---- reading ----------------------------------------------------------------------------------------------

Checkpoint read_checkpoint(const std::string& dir) {
  const fs::path d(dir);
  std::error_code ec;
  HYDRA_CHECK_ENV(fs::is_directory(d, ec), "checkpoint '{}' does not exist", dir);
  HYDRA_CHECK_ENV(fs::exists(d / "SHA256SUMS", ec), "checkpoint '{}' has no SHA256SUMS file (incomplete)", dir);
  std::map<std::string, std::string> sums;
  {
    std::istringstream in(read_text_file((d / "SHA256SUMS").string()));
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      HYDRA_CHECK_ENV(line.size() > 66 && line[64] == ' ' && line[65] == ' ',
                      "checkpoint '{}': malformed SHA256SUMS line '{}'", dir, line);
      sums[line.substr(66)] = line.substr(0, 64);
    }
  }
  for (const char* f : kFiles) {
    auto it = sums.find(f);
    HYDRA_CHECK_ENV(it != sums.end(), "checkpoint '{}': SHA256SUMS has no entry for {}", dir, f);
    HYDRA_CHECK_ENV(fs::exists(d / f, ec), "checkpoint '{}': {} is missing", dir, f);
    const std::string got = sha256_file((d / f).string());
    HYDRA_CHECK_ENV(got == it->second, "checkpoint '{}': {} is corrupt (SHA-256 {} but SHA256SUMS says {})", dir, f,
                    got, it->second);
  }
  Checkpoint ck;
  ck.dir = dir;
  ck.model = load_safetensors((d / "model.safetensors").string());
  ck.optimizer = load_safetensors((d / "optimizer.safetensors").string());
  ck.state = TrainerState::from_json(read_text_file((d / "trainer_state.json").string()),
                                    (d / "trainer_state.json").string());
  ck.config_yaml = read_text_file((d / "config.yaml").string());
  return ck;
}

bool load_latest_checkpoint(const std::string& run_dir, Checkpoint& out, std::vector<std::string>& warnings) {
  for (const auto& [step, dir] : list_checkpoints(run_dir)) {
    try {
      out = read_checkpoint(dir);
      return true;
    } catch (const std::exception& e) {
      warnings.push_back(fmt::format("skipping checkpoint step {}: {}", step, e.what()));
    }
  }
  return false;
}

Checkpoint resolve_checkpoint(const std::string& path) {
  std::error_code ec;
  if (fs::exists(fs::path(path) / "SHA256SUMS", ec)) return read_checkpoint(path);
  HYDRA_CHECK_ENV(fs::is_directory(path, ec), "--checkpoint '{}' does not exist", path);
  Checkpoint ck;
  std::vector<std::string> warnings;
  if (!load_latest_checkpoint(path, ck, warnings)) {
    std::string w;
    for (const auto& x : warnings) w += "\n  " + x;
    HYDRA_CHECK_ENV(false, "--checkpoint '{}': neither a checkpoint folder nor a run folder with a valid checkpoint{}",
                    path, w);
  }
  return ck;
}

LoadedModel load_checkpoint_model(const Checkpoint& ck, const std::string& device, const std::string& what) {
  LoadedModel out;
  out.config = parse_train_config(ck.config_yaml, ck.dir + "/config.yaml", "/");
  out.device = resolve_model_device(device, what);
  out.model = make_language_model(out.config.model);
  out.model->load_checkpoint_tensors(ck.model, ck.dir + "/model.safetensors");
  if (out.device == "cuda") {
    out.model->to(Device("cuda:0"));
    if (out.config.train.precision != "fp32") out.model->set_compute_dtype(DType::BFloat16);
  }
  out.model->eval();
  return out;
}

}  // namespace hydra::train
