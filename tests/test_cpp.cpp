// test_cpp.cpp — the C++ interface (include/tmfalloc.hpp) without the
// preload: errors, run and the guards, nested failures, root<T> and
// named<T> across processes, the allocators, and containers under kill -9.
//
// A plain program under CTest: each test runs in a process of its own with a
// fresh directory, the default store (TMF_PATH ...) set up there, and may
// fork further processes.  "test_cpp NAME..." runs only the tests named.
#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <ftw.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tmfalloc.hpp"

namespace {

// ---- the harness ----

[[noreturn]] void failed(const char *file, int line, const std::string &what)
{
    std::fprintf(stderr, "%s:%d: %s\n", file, line, what.c_str());
    std::_Exit(1);
}

#define CHECK(...)                                                                                 \
    do {                                                                                           \
        if (!(__VA_ARGS__))                                                                        \
            failed(__FILE__, __LINE__, "CHECK(" #__VA_ARGS__ ") failed");                          \
    } while (0)

template <class T, class U>
void check_eq(const T &a, const U &b, const char *expr, const char *file, int line)
{
    if (!(a == b))
        failed(file, line, std::string("CHECK_EQ(") + expr + "): " + std::to_string(a) + " != " + std::to_string(b));
}

#define CHECK_EQ(a, b) check_eq((a), (b), #a ", " #b, __FILE__, __LINE__)

// Runs stmt, which must throw E; then runs the checks in `then` on `e`.
#define CHECK_THROWS(E, stmt, then)                                                                \
    do {                                                                                           \
        bool thrown_ = false;                                                                      \
        try {                                                                                      \
            stmt;                                                                                  \
        } catch (E & e) {                                                                          \
            thrown_ = true;                                                                        \
            (void)e;                                                                               \
            then;                                                                                  \
        }                                                                                          \
        if (!thrown_)                                                                              \
            failed(__FILE__, __LINE__, #stmt " did not throw " #E);                                \
    } while (0)

std::string test_dir;

std::string path(const char *name)
{
    return test_dir + "/" + name;
}

// Stores at TMF_ADDR (or the library's default) + slot * 4 GiB, 1 GiB each;
// the default store uses slot 2.
uintptr_t base_for(int slot)
{
    const char *a = std::getenv("TMF_BASE");
    return static_cast<uintptr_t>(std::strtoull(a, nullptr, 16)) + static_cast<uintptr_t>(slot) * (4ull << 30);
}

tm_store *open_store(const char *name, int slot = 0, size_t max = 1ull << 30)
{
    tm_options o;
    tm_options_init(&o);
    o.base = base_for(slot);
    o.max_size = max;
    o.sync = TM_SYNC_NONE; // survives kill -9 exactly; the tests need no power cuts
    tm_store *st = nullptr;
    int r = tm_open(path(name).c_str(), &o, &st);
    if (r != 0)
        failed(__FILE__, __LINE__, "tm_open " + path(name) + ": " + tm_strerror(r));
    return st;
}

// Runs fn in a child process; CHECK failures there make it exit 1.
int child_status(const std::function<void()> &fn)
{
    std::fflush(nullptr);
    pid_t pid = fork();
    if (pid < 0)
        failed(__FILE__, __LINE__, "fork failed");
    if (pid == 0) {
        fn();
        std::_Exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

#define CHECK_IN_CHILD(...) CHECK_EQ(child_status(__VA_ARGS__), 0)

void check_heap(tm_store *st)
{
    char msg[256];
    int r = tm_store_check(st, msg, sizeof msg);
    if (r != 0)
        failed(__FILE__, __LINE__, std::string("heap check: ") + msg);
}

// ---- persistent types ----

template <class T>
using A = tmf::allocator<T>;
using Str = std::basic_string<char, std::char_traits<char>, A<char>>;
using Vec = std::vector<int, A<int>>;
using Map = std::map<Str, Vec, std::less<Str>, A<std::pair<const Str, Vec>>>;

template <class T>
using SA = tmf::store_allocator<T>;
using SStr = std::basic_string<char, std::char_traits<char>, SA<char>>;
using SVec = std::vector<int, SA<int>>;
using SMap = std::map<SStr, SVec, std::less<SStr>, SA<std::pair<const SStr, SVec>>>;

// Keys longer than the small-string buffer, so that they allocate.
std::string key(long i)
{
    return "key number " + std::to_string(i) + " of the persistent map";
}

struct Data {
    SVec v;
    SMap m;
    long n = 0;
};

// A deep copy into ordinary memory, and a comparison, of a Data.
struct Snapshot {
    std::vector<int> v;
    std::map<std::string, std::vector<int>> m;
    long n;
    tm_stats_t stats;
};

Snapshot snapshot(tm_store *st, const Data &d)
{
    tmf::read_transaction rt(st);
    Snapshot s{{d.v.begin(), d.v.end()}, {}, d.n, {}};
    for (const auto &[k, v] : d.m)
        s.m.emplace(std::string(k.begin(), k.end()), std::vector<int>(v.begin(), v.end()));
    CHECK_EQ(tm_store_stats(st, &s.stats), 0);
    return s;
}

void check_same(const Snapshot &a, const Snapshot &b)
{
    CHECK(a.v == b.v);
    CHECK(a.m == b.m);
    CHECK_EQ(a.n, b.n);
    CHECK_EQ(a.stats.arena_size, b.stats.arena_size);
    CHECK_EQ(a.stats.live_bytes, b.stats.live_bytes);
    CHECK_EQ(a.stats.free_bytes, b.stats.free_bytes);
    CHECK_EQ(a.stats.free_blocks, b.stats.free_blocks);
    CHECK_EQ(a.stats.commits, b.stats.commits);
}

// Many changes: allocations, frees, a reallocation, the arena grown.
void scribble(tm_store *st, Data &d)
{
    for (int i = 0; i < 5000; i++)
        d.v.push_back(-i);
    d.m.erase(d.m.begin());
    d.m[SStr(key(-1).c_str(), st)].assign(100, 7);
    SVec big((SA<int>(st)));
    big.resize(8u << 20); // 32 MiB: the arena grows
    d.n = -1;
}

Data &filled(tm_store *st)
{
    Data &d = tmf::root<Data>(st);
    tmf::run(st, [&] {
        for (int i = 0; i < 50; i++) {
            d.v.push_back(i);
            d.m[SStr(key(i).c_str(), st)].assign(static_cast<size_t>(i % 5), i);
        }
        d.n = 50;
    });
    return d;
}

struct Custom { // not a std::exception
    int n;
};

// ---- the tests ----

void error_category()
{
    tmf::error err(TM_ECORRUPT, "opening x");
    CHECK_EQ(err.code().value(), TM_ECORRUPT);
    CHECK(&err.code().category() == &tmf::category());
    CHECK(std::string(err.code().category().name()) == "tmfalloc");
    CHECK(std::string(err.what()) == std::string("opening x: ") + tm_strerror(TM_ECORRUPT));
    CHECK(err.code() == tmf::errc::corrupt);
    CHECK(err.code() != tmf::errc::full);
    CHECK(tmf::error(ENOENT).code() == std::errc::no_such_file_or_directory);
    CHECK(tmf::error(ENOENT).code().message() == tm_strerror(ENOENT));
    CHECK(std::error_code(tmf::errc::no_transaction).message() == tm_strerror(TM_ENOTX));
    const std::system_error &base = err; // catchable as a system_error
    CHECK(base.code().value() == TM_ECORRUPT);

    // A failing call throws it: a write transaction on a read-only handle.
    tm_store *st = open_store("ro.tmf");
    tm_close(st);
    tm_options o;
    tm_options_init(&o);
    o.base = base_for(0);
    o.read_only = 1;
    CHECK_EQ(tm_open(path("ro.tmf").c_str(), &o, &st), 0);
    CHECK_THROWS(tmf::error, tmf::run(st, [] {}), CHECK_EQ(e.code().value(), EROFS));
    CHECK_THROWS(tmf::error, tmf::transaction tx(st), CHECK(e.code() == std::errc::read_only_file_system));
    tm_close(st);
}

void run_commits_and_returns()
{
    tm_store *st = open_store("run.tmf");
    Data &d = tmf::root<Data>(st);
    int three = tmf::run(st, [&] {
        d.v.push_back(1);
        return 3;
    });
    CHECK_EQ(three, 3);
    int &first = tmf::run(st, [&]() -> int & { return d.v.front(); });
    CHECK(&first == d.v.data());
    tmf::run(st, [&] { d.v.push_back(2); }); // void
    {
        tmf::transaction tx(st);
        d.v.push_back(4);
        tx.commit();
        CHECK_THROWS(tmf::error, tx.commit(), CHECK(e.code() == tmf::errc::no_transaction));
    }
    CHECK(!tm_in_tx());
    CHECK_EQ(tm_close(st), 0);
    CHECK_IN_CHILD([] {
        tm_store *s = open_store("run.tmf");
        Data &dd = tmf::root<Data>(s);
        CHECK((std::vector<int>(dd.v.begin(), dd.v.end()) == std::vector<int>{1, 2, 4}));
        check_heap(s);
    });
}

void exception_aborts()
{
    tm_store *st = open_store("abort.tmf");
    Data &d = filled(st);
    Snapshot before = snapshot(st, d);

    CHECK_THROWS(std::runtime_error, tmf::run(st, [&] {
        scribble(st, d);
        throw std::runtime_error("a message longer than the small-string buffer");
    }),
                 CHECK(std::string(e.what()) == "a message longer than the small-string buffer"));
    check_same(before, snapshot(st, d));
    CHECK(!tm_in_tx());

    // Not a std::exception: rethrown as it is.
    CHECK_THROWS(Custom, tmf::run(st, [&]() -> int {
        scribble(st, d);
        throw Custom{42};
    }),
                 CHECK_EQ(e.n, 42));
    check_same(before, snapshot(st, d));

    // A guard that is not committed aborts, exception or not.
    {
        tmf::transaction tx(st);
        scribble(st, d);
    }
    check_same(before, snapshot(st, d));
    try {
        tmf::transaction tx(st);
        scribble(st, d);
        throw std::out_of_range("x");
    } catch (const std::out_of_range &) {
    }
    check_same(before, snapshot(st, d));
    check_heap(st);

    // A constructor that throws leaves nothing behind either.
    struct Throws {
        Throws() { throw std::length_error("no"); }
    };
    CHECK_THROWS(std::length_error, tmf::named<Throws>(st, "throws"), (void)0);
    CHECK_THROWS(std::length_error, tmf::root<Throws>(tm_default()), (void)0);
    check_same(before, snapshot(st, d));

    // And another process sees the state before, too.
    CHECK_EQ(tm_close(st), 0);
    CHECK_IN_CHILD([&] {
        tm_store *s = open_store("abort.tmf");
        Snapshot after = snapshot(s, tmf::root<Data>(s));
        after.stats.commits = before.stats.commits; // (only the heap is compared)
        check_same(before, after);
        check_heap(s);
    });
}

void nested_failure_dooms_the_transaction()
{
    tm_store *st = open_store("nested.tmf");
    Data &d = filled(st);
    Snapshot before = snapshot(st, d);

    // The outer code catches the inner failure and goes on: the outer run
    // must not commit, and says why.
    CHECK_THROWS(tmf::error, tmf::run(st, [&] {
        d.v.push_back(1000);
        try {
            tmf::run(st, [&] {
                scribble(st, d);
                throw std::runtime_error("inner");
            });
        } catch (const std::runtime_error &) {
            CHECK(tm_in_tx()); // still inside the outer transaction
        }
        d.v.push_back(1001);
    }),
                 CHECK_EQ(e.code().value(), ECANCELED));
    check_same(before, snapshot(st, d));
    CHECK(!tm_in_tx());

    // Uncaught, the inner exception itself reaches the caller.
    CHECK_THROWS(std::invalid_argument, tmf::run(st, [&] {
        d.v.push_back(1000);
        tmf::run(st, [&] { throw std::invalid_argument("inner"); });
    }),
                 CHECK(std::string(e.what()) == "inner"));
    check_same(before, snapshot(st, d));

    // Three levels: the middle one swallows, so its end throws ECANCELED.
    CHECK_THROWS(tmf::error, tmf::run(st, [&] {
        tmf::run(st, [&] {
            try {
                tmf::run(st, [&] {
                    d.n = 7;
                    throw Custom{1};
                });
            } catch (const Custom &) {
            }
        });
        failed(__FILE__, __LINE__, "the doomed middle level returned");
    }),
                 CHECK(e.code() == std::errc::operation_canceled));
    check_same(before, snapshot(st, d));

    // Guards: an inner guard that is not committed dooms the outer one.
    {
        tmf::transaction outer(st);
        d.v.push_back(5);
        {
            tmf::transaction inner(st);
            d.v.push_back(6);
        }
        CHECK_THROWS(tmf::error, outer.commit(), CHECK_EQ(e.code().value(), ECANCELED));
    }
    check_same(before, snapshot(st, d));

    // A failure on another store dooms only that store's transaction.
    tm_store *other = open_store("other.tmf", 1);
    SVec &ov = tmf::root<SVec>(other);
    tmf::run(st, [&] {
        d.n = 51;
        try {
            tmf::run(other, [&] {
                ov.push_back(1);
                throw std::runtime_error("other");
            });
        } catch (const std::runtime_error &) {
        }
    });
    CHECK_EQ(d.n, 51L);
    CHECK(ov.empty());
    tmf::run(st, [&] { d.n = 50; });
    before = snapshot(st, d);

    // Inside tm_begin, a failing run aborts the whole C transaction.
    CHECK_EQ(tm_store_begin(st), 0);
    d.v.push_back(77);
    CHECK_THROWS(std::runtime_error, tmf::run(st, [&] {
        d.v.push_back(78);
        throw std::runtime_error("x");
    }),
                 (void)0);
    CHECK(!tm_in_tx());
    CHECK_EQ(tm_store_commit(st), TM_ENOTX);
    check_same(before, snapshot(st, d));

    // A nested run that succeeds commits nothing by itself: another process
    // sees nothing of it until the outermost commits.
    tmf::run(st, [&] {
        tmf::run(st, [&] { d.v.push_back(2000); });
        CHECK_IN_CHILD([&] {
            tmf::read_transaction rt(st); // the handle reopens in the child
            CHECK_EQ(d.v.back(), 49);
        });
        d.v.push_back(2001);
    });
    CHECK_IN_CHILD([&] {
        tmf::read_transaction rt(st);
        CHECK_EQ(d.v.back(), 2001);
        CHECK_EQ(d.v[d.v.size() - 2], 2000);
    });
    check_heap(st);
    tm_close(other);
    tm_close(st);
}

void read_transactions()
{
    tm_store *st = open_store("read.tmf");
    Data &d = filled(st);
    {
        tmf::read_transaction rt(st);
        tmf::read_transaction nested(st);
        CHECK(&tmf::root<Data>(st) == &d); // found: no writing needed
        CHECK_EQ(d.n, 50L);
        CHECK_THROWS(tmf::error, tmf::run(st, [] {}), CHECK(e.code() == tmf::errc::in_read_transaction));
        CHECK_THROWS(tmf::error, tmf::named<long>(st, "new"), CHECK(e.code() == tmf::errc::in_read_transaction));
    }
    tmf::run(st, [&] {
        tmf::read_transaction rt(st); // inside the thread's own write transaction
        d.n = 60;
    });
    CHECK_EQ(d.n, 60L);
    tm_close(st);
}

// The constructor counts, in this process and in the store.
struct Counted {
    static inline int here = 0;
    long value;
    long pid;
    Counted(tm_store *st, long v) : value(v), pid(getpid())
    {
        ++here;
        tmf::named<long>(st, "constructions") += 1; // joins the constructing transaction
    }
};

struct Report {
    int constructed;
    long value, pid;
    uintptr_t addr;
};

// n processes, released at once, each opening the store and asking for the
// root with its own argument.
std::vector<Report> race_for_root(int n, long first_value)
{
    int go[2], res[2];
    CHECK_EQ(pipe(go), 0);
    CHECK_EQ(pipe(res), 0);
    std::vector<pid_t> pids;
    for (int i = 0; i < n; i++) {
        std::fflush(nullptr);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            char c;
            close(go[1]);
            if (read(go[0], &c, 1) != 0)
                std::_Exit(2);
            tm_store *st = open_store("once.tmf");
            Counted &obj = tmf::root<Counted>(st, st, first_value + i);
            Report r{Counted::here, obj.value, obj.pid, reinterpret_cast<uintptr_t>(&obj)};
            if (write(res[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r))
                std::_Exit(3);
            std::_Exit(tm_close(st) == 0 ? 0 : 4);
        }
        pids.push_back(pid);
    }
    close(go[0]);
    close(go[1]); // go
    close(res[1]);
    std::vector<Report> out(static_cast<size_t>(n));
    for (auto &r : out)
        CHECK_EQ(read(res[0], &r, sizeof r), static_cast<ssize_t>(sizeof r));
    close(res[0]);
    for (pid_t p : pids) {
        int status = 0;
        waitpid(p, &status, 0);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    return out;
}

void root_constructs_once_across_processes()
{
    std::vector<Report> first = race_for_root(6, 100);
    int constructed = 0;
    long value = first[0].value;
    for (const Report &r : first) {
        constructed += r.constructed;
        CHECK_EQ(r.value, value);
        CHECK_EQ(r.addr, first[0].addr);
        CHECK_EQ(r.pid, first[0].pid);
    }
    CHECK_EQ(constructed, 1);
    CHECK(value >= 100 && value < 106); // the argument of whichever came first
    for (const Report &r : race_for_root(4, 200)) {
        CHECK_EQ(r.constructed, 0);
        CHECK_EQ(r.value, value);
        CHECK_EQ(r.addr, first[0].addr);
    }
    tm_store *st = open_store("once.tmf");
    CHECK_EQ(tmf::named<long>(st, "constructions"), 1L);
    CHECK_EQ(tmf::root<Counted>(st, st, 300L).value, value);
    CHECK_EQ(Counted::here, 0);
    tm_close(st);
}

void root_and_named_check_types()
{
    tm_store *st = open_store("types.tmf");
    std::uint64_t &u = tmf::root<std::uint64_t>(st, std::uint64_t{5});
    CHECK_EQ(u, 5u);
    CHECK_EQ(tmf::root<std::uint64_t>(st), 5u);
    // Same size and alignment, another type; another size.
    CHECK_THROWS(tmf::error, tmf::root<double>(st), CHECK_EQ(e.code().value(), EINVAL));
    CHECK_THROWS(tmf::error, (tmf::root<std::array<char, 3>>(st)), CHECK(e.code() == std::errc::invalid_argument));
    tmf::named<Str>(tm_default(), "s"); // the default store is apart
    tmf::named<std::int32_t>(st, "n", 7);
    CHECK_THROWS(tmf::error, tmf::named<std::uint32_t>(st, "n"),
                 CHECK(std::string(e.what()).find("\"n\"") != std::string::npos));
    CHECK_EQ(tmf::named<std::int32_t>(st, "n"), 7);
    CHECK_EQ(tmf::root<std::uint64_t>(st), 5u); // nothing was harmed

    // A newer root block is refused.
    auto *b = static_cast<tmf::detail::root_block *>(tm_store_root(st, sizeof(tmf::detail::root_block)));
    tmf::run(st, [&] { b->version = 2; });
    CHECK_THROWS(tmf::error, tmf::root<std::uint64_t>(st), CHECK(e.code() == tmf::errc::version));
    tmf::run(st, [&] { b->version = 1; });
    tm_close(st);

    // A root that C code uses is not taken over, nor even grown.
    st = open_store("c.tmf");
    auto *c = static_cast<long *>(tm_store_root(st, 32));
    tmf::run(st, [&] { c[2] = 99; });
    CHECK_THROWS(tmf::error, tmf::root<long>(st), CHECK_EQ(e.code().value(), EINVAL));
    CHECK_THROWS(tmf::error, tmf::named<long>(st, "x"), CHECK_EQ(e.code().value(), EINVAL));
    CHECK(tm_store_root(st, 32) == c);
    CHECK_EQ(c[2], 99L);
    c = static_cast<long *>(tm_store_root(st, 128)); // a larger one, as large as the root block
    CHECK_THROWS(tmf::error, tmf::root<long>(st), CHECK_EQ(e.code().value(), EINVAL));
    CHECK_EQ(c[2], 99L);
    tm_close(st);
}

void named_objects_persist_across_processes()
{
    const std::string nul("a\0b", 3);
    CHECK_IN_CHILD([&] {
        tm_store *st = open_store("named.tmf");
        Data &d = tmf::root<Data>(st); // the root and names share the root block
        SVec &alpha = tmf::named<SVec>(st, "alpha", std::initializer_list<int>{1, 2, 3}, SA<int>(st));
        SMap &beta = tmf::named<SMap>(st, "beta"); // its allocator finds the store it lives in
        tmf::run(st, [&] {
            d.n = 9;
            alpha.push_back(4);
            beta[SStr(key(1).c_str(), st)].push_back(10);
            for (int i = 0; i < 100; i++)
                tmf::named<long>(st, "counter " + std::to_string(i), i);
        });
        tmf::named<long>(st, "a", 1L);
        tmf::named<long>(st, "ab", 2L);
        tmf::named<long>(st, "", 3L);
        tmf::named<long>(st, nul, 4L);
        CHECK_EQ(tm_close(st), 0);
    });
    CHECK_IN_CHILD([&] {
        tm_store *st = open_store("named.tmf");
        CHECK_EQ(tmf::root<Data>(st).n, 9L);
        SVec &alpha = tmf::named<SVec>(st, "alpha", std::initializer_list<int>{9});
        CHECK((std::vector<int>(alpha.begin(), alpha.end()) == std::vector<int>{1, 2, 3, 4}));
        CHECK(tm_store_of(alpha.data()) == st);
        SMap &beta = tmf::named<SMap>(st, "beta");
        CHECK_EQ(beta.size(), 1u);
        CHECK_EQ(beta.begin()->second.at(0), 10);
        for (long i = 0; i < 100; i++)
            CHECK_EQ(tmf::named<long>(st, "counter " + std::to_string(i), -1L), i);
        CHECK_EQ(tmf::named<long>(st, "a"), 1L);
        CHECK_EQ(tmf::named<long>(st, "ab"), 2L);
        CHECK_EQ(tmf::named<long>(st, ""), 3L);
        CHECK_EQ(tmf::named<long>(st, nul), 4L);
        CHECK_EQ(tmf::named<long>(st, "a\0c"), 1L); // a C string stops at its NUL
        CHECK(&tmf::named<long>(st, "a") != &tmf::named<long>(st, nul));
        CHECK(&tmf::named<long>(st, "counter 5") == &tmf::named<long>(st, "counter 5"));
        check_heap(st);
        tm_close(st);
    });
}

void allocators()
{
    using IA = tmf::allocator<int>;
    static_assert(std::is_empty_v<IA>);
    static_assert(std::allocator_traits<IA>::is_always_equal::value);
    static_assert(std::is_same_v<std::allocator_traits<IA>::rebind_alloc<double>, tmf::allocator<double>>);
    static_assert(std::is_same_v<std::allocator_traits<SA<int>>::rebind_alloc<char>, SA<char>>);
    static_assert(!std::allocator_traits<SA<int>>::is_always_equal::value);
    static_assert(!std::allocator_traits<SA<int>>::propagate_on_container_copy_assignment::value);
    CHECK(IA() == tmf::allocator<char>());

    tm_store *st = open_store("alloc.tmf");
    tm_store *st2 = open_store("alloc2.tmf", 1);
    CHECK(SA<int>(st) == SA<char>(st));
    CHECK(SA<int>(st) != SA<int>(st2));
    CHECK(SA<int>(st).store() == st);
    CHECK(SA<int>(st).base() == tm_store_base(st));

    // Outside a transaction, and outside any store.
    CHECK_THROWS(tmf::error, SA<int>(st).allocate(1), CHECK(e.code() == tmf::errc::no_transaction));
    CHECK_THROWS(tmf::error, IA().allocate(1), CHECK_EQ(e.code().value(), TM_ENOTX));
    SA<int> nowhere;
    CHECK(nowhere.base() == nullptr);
    CHECK_THROWS(tmf::error, tmf::run(st, [&] { nowhere.allocate(1); }), CHECK_EQ(e.code().value(), EINVAL));

    // Containers of several kinds in two explicit stores and the default one.
    tmf::run(st, [&] {
        tmf::run(st2, [&] {
            SMap &m2 = tmf::root<SMap>(st2);
            SVec &made_in_place = m2[SStr(key(1).c_str(), st2)];
            made_in_place.assign(1000, 3);
            CHECK(tm_store_of(made_in_place.data()) == st2);
            CHECK(made_in_place.get_allocator() == SA<int>(st2));
            auto &l = tmf::named<std::list<int, SA<int>>>(st, "list", SA<int>(st));
            auto &q = tmf::named<std::deque<long, SA<long>>>(st, "deque", SA<long>(st));
            for (int i = 0; i < 10000; i++) {
                l.push_back(i);
                q.push_front(i);
            }
            CHECK(tm_store_of(&l.back()) == st);
            CHECK(tm_store_of(&q.front()) == st);
            tmf::run([] { // and the default store
                auto &dv = tmf::root<std::vector<Str, A<Str>>>();
                dv.emplace_back(key(2).c_str());
                CHECK(tm_store_of(dv.back().data()) == tm_default());
            });
        });
    });
    tmf::run([] {
        struct alignas(64) Wide {
            char c[64];
        };
        std::vector<Wide, A<Wide>> w(3);
        CHECK_EQ(reinterpret_cast<uintptr_t>(w.data()) % 64, 0u);
        CHECK_THROWS(std::bad_alloc, A<char>().allocate(size_t{2} << 30), (void)0);
        CHECK_THROWS(std::bad_array_new_length, A<long>().allocate(size_t(-1) / 4), (void)0);
    });
    CHECK_EQ(tm_close(st2), 0);
    CHECK_EQ(tm_close(st), 0);

    CHECK_IN_CHILD([] {
        tm_store *s = open_store("alloc.tmf");
        tm_store *s2 = open_store("alloc2.tmf", 1);
        auto &l = tmf::named<std::list<int, SA<int>>>(s, "list", SA<int>(s));
        CHECK_EQ(l.size(), 10000u);
        CHECK_EQ(l.back(), 9999);
        CHECK_EQ((tmf::named<std::deque<long, SA<long>>>(s, "deque", SA<long>(s)).front()), 9999L);
        CHECK_EQ(tmf::root<SMap>(s2).begin()->second.size(), 1000u);
        CHECK(tmf::root<std::vector<Str, A<Str>>>().back() == key(2).c_str());
        // A copy in the arena keeps the store of its source.
        tmf::run(s2, [&] {
            SMap &m2 = tmf::root<SMap>(s2);
            m2.emplace(SStr(key(3).c_str(), s2), m2.begin()->second);
            CHECK(tm_store_of(m2.rbegin()->second.data()) == s2);
        });
        check_heap(s);
        check_heap(s2);
    });
}

// ---- kill -9 ----

struct Log {
    Vec v;      // 1, 2, ..., n
    Map m;      // key(i) -> (i % 7) copies of i, for i in 1..n
    long n = 0; // the last commit
};

void check_log(const Log &d, long at_least)
{
    CHECK(d.n >= at_least);
    CHECK_EQ(static_cast<long>(d.v.size()), d.n);
    CHECK_EQ(static_cast<long>(d.m.size()), d.n);
    std::map<std::string, long> want; // (a Str would allocate: no transaction here)
    for (long i = 1; i <= d.n; i++) {
        CHECK_EQ(d.v[static_cast<size_t>(i - 1)], i);
        want.emplace(key(i), i);
    }
    auto it = want.begin();
    for (const auto &[k, v] : d.m) {
        long i = it->second;
        CHECK(std::string(k.begin(), k.end()) == it->first);
        CHECK_EQ(static_cast<long>(v.size()), i % 7);
        CHECK(std::all_of(v.begin(), v.end(), [&](int x) { return x == i; }));
        ++it;
    }
}

// Commits i = n+1, n+2, ... to the default store, writing each i to fd once
// committed; after commit `stop` it opens a transaction, changes everything,
// writes 0 and waits to be killed.
[[noreturn]] void writer(int fd, long stop)
{
    Log &d = tmf::root<Log>();
    for (long i = d.n + 1;; i++) {
        tmf::run([&] {
            d.v.push_back(static_cast<int>(i));
            d.m.emplace(Str(key(i).c_str()), Vec(static_cast<size_t>(i % 7), static_cast<int>(i)));
            d.n = i;
        });
        if (write(fd, &i, sizeof i) != static_cast<ssize_t>(sizeof i))
            std::_Exit(3);
        if (i == stop) {
            tmf::transaction tx;
            d.v.assign(100000, -1);
            d.m.clear();
            d.m[Str("only")].resize(1u << 20);
            d.n = -1;
            long zero = 0;
            if (write(fd, &zero, sizeof zero) != static_cast<ssize_t>(sizeof zero))
                std::_Exit(3);
            for (;;)
                pause();
        }
    }
}

// Starts writer; kills it with SIGKILL once it reports `stop`'s open
// transaction, or after kill_after_us; returns the last acknowledged commit.
long kill_writer(long stop, long kill_after_us)
{
    int p[2];
    CHECK_EQ(pipe(p), 0);
    std::fflush(nullptr);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        writer(p[1], stop);
    }
    close(p[1]);
    long acked = 0, i;
    if (kill_after_us > 0) {
        usleep(static_cast<useconds_t>(kill_after_us));
        kill(pid, SIGKILL);
        while (read(p[0], &i, sizeof i) == static_cast<ssize_t>(sizeof i))
            acked = i > 0 ? i : acked;
    } else {
        while (read(p[0], &i, sizeof i) == static_cast<ssize_t>(sizeof i) && i != 0)
            acked = i;
        kill(pid, SIGKILL);
    }
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    return acked;
}

void containers_survive_kill9()
{
    // Killed inside a transaction that changed everything: the last commit.
    long acked = kill_writer(40, 0);
    CHECK_EQ(acked, 40L);
    CHECK_IN_CHILD([] {
        const Log &d = tmf::root<Log>();
        tmf::read_transaction rt;
        CHECK_EQ(d.n, 40L);
        check_log(d, 40);
        check_heap(tm_default());
    });
    // Killed at random moments, committing or not: every acknowledged
    // commit is there, and the containers are whole.
    std::mt19937 rng(static_cast<unsigned>(getpid()));
    int killed_running = 0;
    for (int round = 0; round < 12; round++) {
        bool in_tx = round % 3 == 0;
        long got = kill_writer(in_tx ? acked + 30 : 1L << 40, in_tx ? 0 : 10000 + static_cast<long>(rng() % 50000));
        killed_running += !in_tx && got > acked;
        acked = std::max(acked, got);
        CHECK_IN_CHILD([&] {
            const Log &d = tmf::root<Log>();
            tmf::read_transaction rt;
            check_log(d, acked);
            check_heap(tm_default());
        });
    }
    CHECK(killed_running > 0); // else the rounds proved nothing
    tmf::read_transaction rt;
    check_log(tmf::root<Log>(), acked);
}

const struct {
    const char *name;
    void (*fn)();
} tests[] = {
    {"error_category", error_category},
    {"run_commits_and_returns", run_commits_and_returns},
    {"exception_aborts", exception_aborts},
    {"nested_failure_dooms_the_transaction", nested_failure_dooms_the_transaction},
    {"read_transactions", read_transactions},
    {"root_constructs_once_across_processes", root_constructs_once_across_processes},
    {"root_and_named_check_types", root_and_named_check_types},
    {"named_objects_persist_across_processes", named_objects_persist_across_processes},
    {"allocators", allocators},
    {"containers_survive_kill9", containers_survive_kill9},
};

int remove_one(const char *p, const struct stat *, int, struct FTW *)
{
    return remove(p);
}

// Runs one test in a process of its own, in a fresh directory.
bool run_test(const char *name, void (*fn)())
{
    const char *tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/tmfcpp.XXXXXX";
    CHECK(mkdtemp(tmpl.data()) != nullptr);
    test_dir = tmpl;
    char addr[32];
    std::snprintf(addr, sizeof addr, "%llx", static_cast<unsigned long long>(base_for(2)));
    setenv("TMF_PATH", path("default.tmf").c_str(), 1);
    setenv("TMF_ADDR", addr, 1);
    setenv("TMF_MAX_SIZE", "1g", 1);
    setenv("TMF_SYNC", "none", 1);
    int status = child_status(fn);
    nftw(test_dir.c_str(), remove_one, 16, FTW_DEPTH | FTW_PHYS);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (WIFSIGNALED(status))
        std::fprintf(stderr, "%s: killed by signal %d\n", name, WTERMSIG(status));
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", name);
    return ok;
}

} // namespace

int main(int argc, char **argv)
{
    // TMF_ADDR, as the other suites read it, moves every store of the test.
    const char *a = std::getenv("TMF_ADDR");
    char base[32];
    std::snprintf(base, sizeof base, "%s", a && *a ? a : "200000000000");
    setenv("TMF_BASE", base, 1);
    int failures = 0, ran = 0;
    for (const auto &t : tests) {
        bool wanted = argc < 2;
        for (int i = 1; i < argc; i++)
            wanted |= std::strcmp(argv[i], t.name) == 0;
        if (wanted) {
            ran++;
            failures += !run_test(t.name, t.fn);
        }
    }
    std::printf("%d of %d tests passed\n", ran - failures, ran);
    return failures || !ran ? 1 : 0;
}
