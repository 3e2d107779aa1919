// cpp_preload_prog — tmf::run under the preload, where an exception thrown
// inside a transaction lives in the arena with the strings it holds: run
// must roll back, rethrow a copy made outside the arena, and leave the store
// as it was.  One line per case; test_preload.c checks them.
#include <cerrno>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "tmfalloc.hpp"

namespace {

using Strings = std::vector<std::string>; // the plain STL: the preload places it

struct MyError : std::runtime_error {
    MyError() : std::runtime_error("my error, with a message longer than the small-string buffer") {}
};

// Adds a thousand strings to v, then calls thrower, all in one run.
template <class F>
void attempt(const char *name, Strings &v, F thrower)
{
    std::size_t before = v.size();
    std::string caught;
    try {
        tmf::run([&] {
            for (int i = 0; i < 1000; i++)
                v.push_back("an element longer than the small-string buffer, number " + std::to_string(i));
            thrower();
        });
        caught = "nothing";
    } catch (const tmf::error &e) {
        caught = "tmf::error " + std::to_string(e.code().value()) + ": " + e.what();
    } catch (const std::system_error &e) {
        caught = "std::system_error " + std::to_string(e.code().value()) + ": " + e.what();
    } catch (const MyError &e) { // lost under the preload: it becomes its std:: base
        caught = std::string("MyError: ") + e.what();
    } catch (const std::invalid_argument &e) {
        caught = std::string("std::invalid_argument: ") + e.what();
    } catch (const std::runtime_error &e) {
        caught = std::string("std::runtime_error: ") + e.what();
    } catch (const std::bad_alloc &) {
        caught = "std::bad_alloc";
    } catch (...) {
        caught = "something else";
    }
    tmf::read_transaction rt;
    std::printf("%s: %s; %s\n", name, caught.c_str(),
                v.size() == before ? "unchanged" : v.size() == before + 1000 ? "committed" : "torn");
}

} // namespace

int main()
{
    Strings &v = tmf::root<Strings>();
    // Committed free memory full of 0xff where exceptions will be made: a
    // rollback then reverts them to garbage, not to zeros.
    tmf::run([] {
        Strings junk;
        for (std::size_t n = 0; n < 4000; n++)
            junk.emplace_back(16 + n % 512, '\xff');
    });
    attempt("runtime", v, [] { throw std::runtime_error("runtime, " + std::string(40, 'x')); });
    attempt("invalid", v, [] { throw std::invalid_argument("invalid, " + std::string(40, 'y')); });
    attempt("system", v, [] { throw std::system_error(ENOENT, std::generic_category(), "opening a file"); });
    attempt("tmf", v, [] { throw tmf::error(TM_EFULL, "growing the arena"); });
    attempt("bare", v, [] { throw tmf::error(TM_ECORRUPT); });
    attempt("derived", v, [] { throw MyError(); });
    attempt("int", v, [] { throw 42; });
    attempt("bad_alloc", v, [] { throw std::bad_alloc(); });
    attempt("nested", v, [] {
        try {
            tmf::run([] { throw std::runtime_error("inner"); });
        } catch (const std::runtime_error &) {
        }
    });
    attempt("none", v, [] {});
    char msg[256];
    int r = tm_check(msg, sizeof msg);
    std::printf("heap: %s\n", r == 0 ? "clean" : msg);
    std::printf("size: %zu\n", v.size());
    return 0;
}
