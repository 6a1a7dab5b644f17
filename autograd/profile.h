#pragma once
// A wall-clock profiler for "where does the time go" reports (hydra-train's train.profile). Off by default; when
// off, Scope and the engine's hook cost one branch.
//  * Scope("name") adds the time between its construction and destruction to the entry `name` (forward code
//    marks its layers this way; nested scopes each count their full time).
//  * While enabled, the backward engine adds the time of each node's backward to "backward: <node name>".
// Times are host wall-clock: exact for CPU work. For GPU work set a synchronising hook (set_sync) so each scope
// waits for the device before reading the clock (which itself slows the run down).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace hydra::ag::profile {

bool enabled();
void set_enabled(bool on);
void set_sync(std::function<void()> sync);  // called before each clock read while enabled (empty = none)
void reset();

void add(const std::string& name, double seconds);

struct Entry {
  std::string name;
  int64_t calls = 0;
  double seconds = 0;
};
std::vector<Entry> entries();  // sorted by time, largest first

class Scope {
 public:
  explicit Scope(const char* name);
  explicit Scope(std::string name);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  std::string name_;
  double start_ = -1;  // < 0: profiling was off at construction
};

double now_seconds();  // after the sync hook, when one is set

}  // namespace hydra::ag::profile
