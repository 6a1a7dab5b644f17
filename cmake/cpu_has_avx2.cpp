// Configure-time probe: exits 0 when the build machine's CPU has AVX2 and FMA.
int main() { return (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 0 : 1; }
