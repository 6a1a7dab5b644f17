// Wall-clock profiler (profile.h).
#include "autograd/profile.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>

namespace hydra::ag::profile {

namespace {
std::atomic<bool> g_enabled{false};
std::mutex g_mu;
std::map<std::string, Entry> g_entries;
std::function<void()> g_sync;
}  // namespace

bool enabled() { return g_enabled.load(std::memory_order_relaxed); }
void set_enabled(bool on) { g_enabled = on; }
void set_sync(std::function<void()> sync) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_sync = std::move(sync);
}
void reset() {
  std::lock_guard<std::mutex> lock(g_mu);
  g_entries.clear();
}

double now_seconds() {
  std::function<void()> sync;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    sync = g_sync;
  }
  if (sync) sync();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void add(const std::string& name, double seconds) {
  std::lock_guard<std::mutex> lock(g_mu);
  Entry& e = g_entries[name];
  e.name = name;
  e.calls += 1;
  e.seconds += seconds;
}

std::vector<Entry> entries() {
  std::vector<Entry> out;
  {
    std::lock_guard<std::mutex> lock(g_mu);
    for (const auto& [n, e] : g_entries) out.push_back(e);
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.seconds > b.seconds; });
  return out;
}

Scope::Scope(const char* name) : Scope(std::string(name)) {}
Scope::Scope(std::string name) {
  if (!enabled()) return;
  name_ = std::move(name);
  start_ = now_seconds();
}
Scope::~Scope() {
  if (start_ < 0) return;
  add(name_, now_seconds() - start_);
}

}  // namespace hydra::ag::profile
