// Lent storage (tensor.hpp): a buffer offered to the next allocation of its size on this thread,
// and the buffers lent out, each holding its owner until its tensor lets it go.
#include "tensor.hpp"

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>

namespace ax {
namespace {

struct Offer {
  void* data = nullptr;
  std::size_t bytes = 0;
};
thread_local Offer offered;

// The buffers lent out, by address (a file's tensor may be lent to several tapes at once), with
// their owners. Freeing any tensor asks whether its buffer was lent: the common answer, no, is
// given without the lock by the count and the span of addresses ever lent.
struct Lent {
  std::mutex mutex;
  std::multimap<std::uintptr_t, std::shared_ptr<const void>> owners;
  std::atomic<std::size_t> count{0};
  std::atomic<std::uintptr_t> lowest{UINTPTR_MAX}, highest{0};
};
Lent& lent() {
  static Lent* registry = new Lent;  // never destroyed: a tensor freed during exit may still ask
  return *registry;
}

}  // namespace

void* detail::take_offered(std::size_t bytes) noexcept {
  if (!offered.data || offered.bytes != bytes) return nullptr;
  void* data = offered.data;
  offered = {};
  return data;
}

bool detail::give_back_lent(void* data) noexcept {
  Lent& l = lent();
  const auto address = reinterpret_cast<std::uintptr_t>(data);
  if (l.count.load(std::memory_order_acquire) == 0 || address < l.lowest.load(std::memory_order_relaxed) ||
      address > l.highest.load(std::memory_order_relaxed))
    return false;
  std::shared_ptr<const void> owner;  // let go outside the lock: it may unmap a file
  {
    const std::lock_guard<std::mutex> lock(l.mutex);
    const auto found = l.owners.find(address);
    if (found == l.owners.end()) return false;
    owner = std::move(found->second);
    l.owners.erase(found);
    l.count.fetch_sub(1, std::memory_order_release);
  }
  return true;
}

template <class T>
Tensor<T> lent_tensor(const Shape& shape, T* data, std::shared_ptr<const void> owner) {
  const std::size_t bytes = numel(shape) * sizeof(T);
  if (bytes == 0) return Tensor<T>(shape);
  Lent& l = lent();
  const auto address = reinterpret_cast<std::uintptr_t>(data);
  std::multimap<std::uintptr_t, std::shared_ptr<const void>>::iterator entry;
  {  // registered first: once a tensor holds the buffer, freeing it must find it
    const std::lock_guard<std::mutex> lock(l.mutex);
    entry = l.owners.emplace(address, std::move(owner));
    if (address < l.lowest.load(std::memory_order_relaxed)) l.lowest.store(address, std::memory_order_relaxed);
    if (address > l.highest.load(std::memory_order_relaxed)) l.highest.store(address, std::memory_order_relaxed);
    l.count.fetch_add(1, std::memory_order_release);
  }
  offered = {data, bytes};
  Tensor<T> t(shape);  // its one allocation, of exactly `bytes`, takes the offer
  const bool taken = offered.data == nullptr;
  offered = {};
  if (!taken) {  // not expected of a fresh tensor; then it holds storage of its own
    const std::lock_guard<std::mutex> lock(l.mutex);
    l.owners.erase(entry);
    l.count.fetch_sub(1, std::memory_order_release);
    throw Error("lent_tensor: a tensor of shape " + to_string(shape) + " did not take the storage offered");
  }
  return t;
}

template Tensor<float> lent_tensor(const Shape&, float*, std::shared_ptr<const void>);
template Tensor<double> lent_tensor(const Shape&, double*, std::shared_ptr<const void>);

}  // namespace ax
