// hpp_compile.cpp — include/tmfalloc.hpp alone, every template of it
// instantiated, built with every warning an error in C++17 and C++20
// (tests/CMakeLists.txt): a warning in the header fails the build.
#include "tmfalloc.hpp"
#include "tmfalloc.hpp" // the guard

#include <deque>
#include <list>
#include <map>
#include <string>
#include <vector>

namespace {

template <class T>
using A = tmf::allocator<T>;
using Str = std::basic_string<char, std::char_traits<char>, A<char>>;
using Map = std::map<Str, std::vector<int, A<int>>, std::less<Str>, A<std::pair<const Str, std::vector<int, A<int>>>>>;

template <class T>
using SA = tmf::store_allocator<T>;
using SMap = std::map<int, std::deque<long, SA<long>>, std::less<int>, SA<std::pair<const int, std::deque<long, SA<long>>>>>;

struct Aggregate {
    int a;
    long b;
};

} // namespace

int tmf_hpp_compile(tm_store *st);

int tmf_hpp_compile(tm_store *st)
{
    Map &m = tmf::root<Map>();
    SMap &sm = tmf::named<SMap>(st, "sm");
    auto &l = tmf::named<std::list<int, SA<int>>>(st, "l", SA<int>(st));
    Aggregate &ag = tmf::named<Aggregate>("ag", 1, 2L);
    Aggregate &ag2 = tmf::root<Aggregate>(st, 3, 4L);
    int n = tmf::run([&] {
        m[Str("k")].push_back(1);
        return static_cast<int>(m.size());
    });
    long &ref = tmf::run(st, [&]() -> long & {
        sm[1].push_back(2);
        l.push_back(3);
        return ag2.b;
    });
    tmf::run(st, [] {});
    {
        tmf::transaction tx;
        tmf::transaction inner(st);
        inner.commit();
        tx.commit();
    }
    tmf::read_transaction rt(st);
    tmf::read_transaction rt_default;
    try {
        tmf::run([] { throw tmf::error(TM_EFULL, "x"); });
    } catch (const tmf::error &e) {
        n += e.code() == tmf::errc::full;
    }
    static_assert(std::is_empty_v<A<int>>);
    return n + static_cast<int>(ref) + ag.a + (A<int>() == A<char>()) + (SA<int>(st) != SA<char>(st));
}
