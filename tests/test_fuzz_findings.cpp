// Fuzzing's findings that a replay alone would not catch in the normal build (docs/testing.md):
// the message each now gets.
#include "attribution/io.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace ax;

namespace {
const std::string regressions = std::string(AXIOMATIC_SOURCE) + "/fuzz/regressions/";
}

TEST_CASE("a PNG chunk that claims more bytes than the file has is refused before stb_image allocates them") {
  // 373 bytes whose IDAT claims 1468006716: stb_image grew its buffer to 2 GB before reading it
  const std::string path = regressions + "png/idat_claims_1468006716_bytes.png";
  CHECK_THROWS_WITH_AS(attr::read_png(path),
                       doctest::Contains("PNG chunk at byte 33 claims 1468006716 bytes; the file has 332 left"), Error);
  CHECK(attr::read_png(std::string(AXIOMATIC_SOURCE) + "/examples/images/test0008_sandal.png").shape() ==
        Shape{1, 28, 28});
}

TEST_CASE("read_png refuses what is not a PNG before stb_image decodes it as another format") {
  // 29 bytes of PGM declaring 5555555 columns: stb_image allocated 33 MB for it
  CHECK_THROWS_WITH_AS(attr::read_png(regressions + "png/pgm_5555555_columns.png"),
                       doctest::Contains("pgm_5555555_columns.png: not a PNG file (no PNG signature)"), Error);
}
