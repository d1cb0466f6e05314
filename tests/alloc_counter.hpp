#pragma once
namespace ax::test {
// Heap allocations made through operator new since the program started (alloc_counter.cpp).
long heap_allocations();
}
