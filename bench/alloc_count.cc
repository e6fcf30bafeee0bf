// An LD_PRELOAD library that counts heap allocations, for bench/per_request.py.
//
// Every call to malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign, valloc and
// pvalloc adds one to a counter kept in the file named by CITADEL_ALLOC_COUNT_FILE (8 bytes,
// mapped shared), so that the counts of every process that loads the library (nginx's master
// and workers, say) add up in one place and the benchmark can read them before and after a run.
// The allocations themselves go to glibc's own entry points (__libc_malloc and friends).
//
// Only for benchmarks: nothing in Citadel links it.

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

extern "C" {
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);
}

namespace {

std::atomic<uint64_t> before_init{0};
std::atomic<uint64_t>* counter = &before_init;

void count() { counter->fetch_add(1, std::memory_order_relaxed); }

__attribute__((constructor)) void map_counter() {
  const char* path = getenv("CITADEL_ALLOC_COUNT_FILE");
  if (path == nullptr) return;
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return;
  if (ftruncate(fd, sizeof(uint64_t)) != 0) {
    close(fd);
    return;
  }
  void* p = mmap(nullptr, sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p != MAP_FAILED) counter = static_cast<std::atomic<uint64_t>*>(p);
}

}  // namespace

extern "C" {

void* malloc(size_t size) noexcept {
  count();
  return __libc_malloc(size);
}

void* calloc(size_t n, size_t size) noexcept {
  count();
  return __libc_calloc(n, size);
}

void* realloc(void* p, size_t size) noexcept {
  count();
  return __libc_realloc(p, size);
}

void* memalign(size_t alignment, size_t size) noexcept {
  count();
  return __libc_memalign(alignment, size);
}

void* aligned_alloc(size_t alignment, size_t size) noexcept {
  count();
  return __libc_memalign(alignment, size);
}

int posix_memalign(void** out, size_t alignment, size_t size) noexcept {
  count();
  if (alignment % sizeof(void*) != 0 || (alignment & (alignment - 1)) != 0) return EINVAL;
  void* p = __libc_memalign(alignment, size);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}

void* valloc(size_t size) noexcept {
  count();
  return __libc_valloc(size);
}

void* pvalloc(size_t size) noexcept {
  count();
  return __libc_pvalloc(size);
}

}  // extern "C"
