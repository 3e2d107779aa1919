// stlmap — a std::map<std::string, std::vector<long>> kept in the store,
// through the preload, with the STL unmodified.
//
//   LD_PRELOAD=libtmfpreload.so stlmap [KEY=NUMBER ...]
//
// Each argument appends NUMBER to the vector under KEY; then the whole map is
// printed.  Run it again: the map is still there.  Objects are built inside
// the transaction, so their memory is in the arena; copy values in (never
// move a string or vector made outside the transaction into the map: its
// buffer would stay in volatile memory).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "tmfalloc.h"

using Map = std::map<std::string, std::vector<long>>;

struct Root {
    Map *map;
};

int main(int argc, char **argv)
{
    Root *root = static_cast<Root *>(tm_root(sizeof(Root)));
    if (!root) {
        std::perror("stlmap: tm_root");
        return 1;
    }
    if (int err = tm_begin()) {
        std::fprintf(stderr, "stlmap: tm_begin: %s\n", tm_strerror(err));
        return 1;
    }
    if (!root->map)
        root->map = new Map();
    for (int i = 1; i < argc; i++) {
        const char *eq = std::strchr(argv[i], '=');
        if (!eq) {
            tm_abort();
            std::fprintf(stderr, "stlmap: expected KEY=NUMBER, got %s\n", argv[i]);
            return 2;
        }
        (*root->map)[std::string(argv[i], static_cast<size_t>(eq - argv[i]))].push_back(std::strtol(eq + 1, nullptr, 10));
    }
    if (int err = tm_commit()) {
        std::fprintf(stderr, "stlmap: tm_commit: %s\n", tm_strerror(err));
        return 1;
    }
    tm_read_begin();
    for (const auto &kv : *root->map) {
        std::printf("%s:", kv.first.c_str());
        for (long v : kv.second)
            std::printf(" %ld", v);
        std::printf("\n");
    }
    tm_read_end();
    return 0;
}
