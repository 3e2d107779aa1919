// stlmap — a std::map<std::string, std::vector<int>> kept in the store,
// through the preload, with the STL unmodified.
//
//   LD_PRELOAD=libtmfpreload.so stlmap [KEY=NUMBER ...]
//
// Each argument appends NUMBER to the vector under KEY, all in one
// transaction; then the whole map is printed.  Run it again: the map is
// still there.  A bad argument throws, which rolls every argument back.
//
// Three lines make a plain C++ program persistent: the include, the root,
// and the transaction around the changes.  Objects are built inside the
// transaction, so their memory is in the arena; copy values in (never move a
// string or vector made outside the transaction into the map: its buffer
// would stay in volatile memory).
#include <cstdio>
#include <exception>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "tmfalloc.hpp"

using Map = std::map<std::string, std::vector<int>>;

static void add(Map &map, const std::string &arg)
{
    std::size_t eq = arg.find('=');
    if (eq == std::string::npos)
        throw std::invalid_argument("expected KEY=NUMBER, got " + arg);
    std::vector<int> &values = map[arg.substr(0, eq)];
    values.push_back(std::stoi(arg.substr(eq + 1)));
    if (!tm_store_of(values.data())) // not in the arena: no preload
        throw std::runtime_error("run me with LD_PRELOAD=libtmfpreload.so");
}

int main(int argc, char **argv)
{
    try {
        Map &map = tmf::root<Map>();
        tmf::run([&] {
            for (int i = 1; i < argc; i++)
                add(map, argv[i]);
        });
        tmf::read_transaction reading;
        for (const auto &[key, values] : map) {
            std::printf("%s:", key.c_str());
            for (int v : values)
                std::printf(" %d", v);
            std::printf("\n");
        }
    } catch (const std::logic_error &e) { // invalid_argument, and stoi's out_of_range
        std::fprintf(stderr, "stlmap: %s\n", e.what());
        return 2;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "stlmap: %s\n", e.what());
        return 1;
    }
    return 0;
}
