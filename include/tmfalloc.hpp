/*
 * tmfalloc.hpp — the C++ interface of tmfalloc: header-only, C++17, over the
 * C calls of tmfalloc.h (link -ltmfalloc as for C).
 *
 *     using Map = std::map<std::string, std::vector<int>>;   // under the preload
 *     Map &m = tmf::root<Map>();              // constructed once in the store's life
 *     tmf::run([&] { m["runs"].push_back(1); });   // atomic; an exception rolls it back
 *
 * Without the preload, containers allocate in the store through
 * tmf::allocator (std::vector<int, tmf::allocator<int>>).
 *
 *   tmf::error               a std::system_error carrying a tm_* error code
 *                            (an errno value or a TM_E... code) and
 *                            tm_strerror's message; tmf::category() is its
 *                            category, tmf::errc names the TM_E... codes.
 *   tmf::run(f)              begins a write transaction, calls f(), commits,
 *                            returns f's result.  If f throws, aborts and
 *                            rethrows; a failed commit throws tmf::error.
 *   tmf::transaction         RAII: begins in its constructor; commit()
 *                            commits; the destructor aborts if commit() was
 *                            not called.
 *   tmf::read_transaction    RAII around tm_read_begin / tm_read_end.
 *   tmf::root<T>(args...)    the store's root object, a T: the first call in
 *                            the store's life constructs it from args inside
 *                            a write transaction; every later call, in any
 *                            process, returns the same object.
 *   tmf::named<T>(name, args...)  the same for an object found by its name.
 *   tmf::allocator<T>        a standard allocator over tm_malloc / tm_free on
 *                            the default store; stateless.
 *   tmf::allocator<T, tm_store>  (alias tmf::store_allocator<T>) the same on
 *                            an explicit store.
 * Each call and guard also takes a tm_store * first, for a store from tm_open.
 *
 * Rules and caveats (the C caveats of tmfalloc.h hold too)
 *
 * 1. Nesting.  A run or transaction inside another on the same store and
 *    thread joins it; only the outermost commits.  An exception that leaves
 *    a nested level dooms the whole transaction: that level ends and
 *    rethrows, and from then on the transaction can only roll back.  Every
 *    enclosing level on that store ends by throwing — the exception itself,
 *    or tmf::error(ECANCELED) from commit() when the code in between caught
 *    it — and the outermost aborts.  So catching a nested failure never lets
 *    the outer transaction commit half of its work (there are no partial
 *    rollbacks).  A level that is the outermost C++ one but runs inside a
 *    transaction begun with tm_begin() aborts that whole transaction when it
 *    fails, since C code cannot be told of the doom; the C caller's
 *    tm_commit() then returns TM_ENOTX.
 *
 * 2. Exceptions under the preload.  Under LD_PRELOAD=libtmfpreload.so all
 *    that a thread allocates inside a write transaction lands in the arena:
 *    exception objects too, with the strings they hold, and an abort takes
 *    them back.  So run(), when it aborts under the preload, first rebuilds
 *    the exception outside the arena and rethrows that copy: the classes of
 *    <stdexcept> keep their type and what(), std::system_error and
 *    tmf::error their code and what(), std::bad_alloc its type; a class
 *    derived from one of these becomes that one, any other std::exception
 *    a std::runtime_error with its what(), and anything else
 *    tmf::error(ECANCELED).  A guard's destructor cannot do this: under the
 *    preload, let exceptions leave transactions through run(), not through
 *    a transaction guard.  Without the preload exceptions pass unchanged.
 *    Likewise, under the preload a result of run() that owns memory (a
 *    std::string) owns arena memory, made inside the transaction: free it
 *    inside a write transaction, or return plain values.
 *
 * 3. root<T> and named<T> own the store's root (tm_root): it holds a 64-byte
 *    block (struct detail::root_block) with a magic, the address and type
 *    stamp of root<T>'s object and the list of named objects.  Each object
 *    lives in a heap block of its own and never moves (tm_root moves the
 *    root when it grows).  A type stamp is sizeof, alignof and a hash of
 *    the mangled type name (typeid(T).name(); without RTTI, size and
 *    alignment only); asking for an object with another stamp throws
 *    tmf::error(EINVAL), as does a root that C code uses through tm_root.
 *    Objects are never destroyed: they live as long as the store.  A
 *    lookup takes a read transaction and walks the names: look an object up
 *    once and keep the reference.  A call that must construct needs a write
 *    transaction, so it throws TM_EREADTX inside a read transaction.
 *
 * 4. Pointers.  An object in the store must point only into the same arena
 *    (or be null), or into the code and static data of the program and its
 *    libraries: never to the process's heap or stack.  Its containers must
 *    allocate in the arena — through tmf::allocator, or, under the preload,
 *    with any allocator inside a write transaction.  Objects with virtual
 *    functions, and std::function, hold pointers into the program's code:
 *    they survive restarts of the same binaries loaded at the same
 *    addresses (the preload turns address randomisation off), and a store
 *    whose objects point into a program or library that moved or changed
 *    is refused with TM_ELAYOUT (see the caveat in tmfalloc.h).
 *
 * 5. Allocators.  tmf::allocator<T> is empty and always equal: it allocates
 *    in the default store, inside a write transaction of the calling thread.
 *    tmf::store_allocator<T> keeps the base address of its store, not the
 *    tm_store * (a handle is process-local: saved in the arena it would
 *    dangle after a restart).  The base is an arena address like any other,
 *    valid in every process because a store is always mapped at its base;
 *    each allocation finds the open handle with tm_store_of(base).  Made
 *    from a tm_store *, it takes that store's base; default-constructed
 *    inside a store (a container built in place in the arena) it takes the
 *    base of the store it lives in; one with no base resolves the store it
 *    lives in at each allocation and throws tmf::error(EINVAL) outside any
 *    store.  Two are equal when they name the same store.  As with
 *    std::pmr::polymorphic_allocator, a container keeps its allocator on
 *    copy, move assignment and swap (swap two containers of one store only).
 *    Both throw std::bad_alloc when the arena is full and tmf::error
 *    (TM_ENOTX) outside a write transaction; deallocation finds the store
 *    from the pointer.
 */
#ifndef TMFALLOC_HPP
#define TMFALLOC_HPP

#if __cplusplus < 201703L
#error "tmfalloc.hpp needs C++17 (-std=c++17)"
#endif

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "tmfalloc.h"

namespace tmf {

// ---- errors ----

// The TM_E... codes; errno values compare equal to std::errc.
enum class errc {
    not_store = TM_ENOTSTORE,
    version = TM_EVERSION,
    corrupt = TM_ECORRUPT,
    truncated = TM_ETRUNCATED,
    address_in_use = TM_EADDR,
    poisoned = TM_EPOISONED,
    no_transaction = TM_ENOTX,
    in_read_transaction = TM_EREADTX,
    other_thread = TM_EOTHERTX,
    full = TM_EFULL,
    page_size = TM_EPAGESIZE,
};

namespace detail {
class category_impl final : public std::error_category {
public:
    const char *name() const noexcept override { return "tmfalloc"; }
    std::string message(int code) const override { return tm_strerror(code); }
    std::error_condition default_error_condition(int code) const noexcept override
    {
        if (code > 0 && code < TM_EFIRST)
            return {code, std::generic_category()};
        return {code, *this};
    }
};
} // namespace detail

inline const std::error_category &category() noexcept
{
    static const detail::category_impl c;
    return c;
}

inline std::error_code make_error_code(errc e) noexcept
{
    return {static_cast<int>(e), category()};
}

class error : public std::system_error {
public:
    explicit error(int code) : std::system_error(code, category()) {}
    // what() is "context: message".
    error(int code, const std::string &context) : std::system_error(code, category(), context) {}
};

} // namespace tmf

template <>
struct std::is_error_code_enum<tmf::errc> : std::true_type {};

namespace tmf {
namespace detail {

[[noreturn]] inline void fail(int code, const char *context)
{
    throw error(code ? code : EIO, context);
}

inline void check(int code, const char *context)
{
    if (code != 0)
        fail(code, context);
}

inline tm_store *default_store()
{
    tm_store *st = tm_default();
    if (!st)
        fail(errno, "tmf: cannot open the default store");
    return st;
}

// ENOMEM (or TM_EFULL) is std::bad_alloc, as the standard wants of
// allocators; TM_ENOTX and the rest are usage errors.
[[noreturn]] inline void alloc_failed(int code, const char *context)
{
    if (code == ENOMEM || code == TM_EFULL || code == 0)
        throw std::bad_alloc();
    fail(code, context);
}

// In the arena of st, or of the default store when st is null.
inline void *allocate(tm_store *st, std::size_t size, std::size_t align, const char *context)
{
    void *p;
    if (align <= 16) {
        p = st ? tm_store_malloc(st, size) : tm_malloc(size);
    } else {
        size = (size + align - 1) / align * align;
        p = st ? tm_store_aligned_alloc(st, align, size) : tm_aligned_alloc(align, size);
    }
    if (!p)
        alloc_failed(errno, context);
    return p;
}

template <class T>
T *allocate_n(tm_store *st, std::size_t n)
{
    if (n > static_cast<std::size_t>(-1) / sizeof(T))
        throw std::bad_array_new_length();
    return static_cast<T *>(allocate(st, n * sizeof(T), alignof(T), "tmf::allocator"));
}

// ---- transaction frames ----

// Each open transaction guard of the thread, innermost first.  A nested
// guard on the same store dooms the enclosing one when it fails (rule 1).
struct frame {
    tm_store *st;
    frame *up;
    bool doomed;
};

inline thread_local frame *innermost = nullptr;

inline frame *enclosing(frame *from, const tm_store *st) noexcept
{
    while (from && from->st != st)
        from = from->up;
    return from;
}

// tm_transient_begin/end: the thread's malloc goes to glibc meanwhile.
struct transient {
    transient() noexcept { tm_transient_begin(); }
    ~transient() { tm_transient_end(); }
    transient(const transient &) = delete;
    transient &operator=(const transient &) = delete;
};

// Whether this thread's malloc lands in an arena now: the preload routes it
// there inside a write transaction, and exceptions with it (rule 2).
inline bool malloc_in_arena() noexcept
{
    void *p = std::calloc(1, 1);
    bool in = p && tm_store_of(p);
    std::free(p);
    return in;
}

// A new E (tmf::error or std::system_error) with e's code and what(): the
// context its constructor put before ": message", if any.
template <class E, class Code>
std::exception_ptr copy_system_error(const std::system_error &e, Code code)
{
    std::string_view what = e.what();
    std::string message = e.code().message(), tail = ": " + message;
    if (what == message)
        return std::make_exception_ptr(E(code));
    if (what.size() >= tail.size() && what.substr(what.size() - tail.size()) == tail)
        what.remove_suffix(tail.size());
    return std::make_exception_ptr(E(code, std::string(what)));
}

template <class E>
std::exception_ptr copy_of(const std::exception &e)
{
    return std::make_exception_ptr(E(e.what()));
}

// A copy, made outside the arena, of the exception being handled (rule 2).
// Called inside a handler, while the transaction still holds the original.
inline std::exception_ptr relay_current() noexcept
{
    transient outside;
    try {
        try {
            throw;
        } catch (const error &e) {
            return copy_system_error<error>(e, e.code().value());
        } catch (const std::system_error &e) {
            return copy_system_error<std::system_error>(e, e.code());
        } catch (const std::invalid_argument &e) {
            return copy_of<std::invalid_argument>(e);
        } catch (const std::domain_error &e) {
            return copy_of<std::domain_error>(e);
        } catch (const std::length_error &e) {
            return copy_of<std::length_error>(e);
        } catch (const std::out_of_range &e) {
            return copy_of<std::out_of_range>(e);
        } catch (const std::logic_error &e) {
            return copy_of<std::logic_error>(e);
        } catch (const std::range_error &e) {
            return copy_of<std::range_error>(e);
        } catch (const std::overflow_error &e) {
            return copy_of<std::overflow_error>(e);
        } catch (const std::underflow_error &e) {
            return copy_of<std::underflow_error>(e);
        } catch (const std::bad_alloc &) {
            return std::make_exception_ptr(std::bad_alloc());
        } catch (const std::exception &e) {
            return copy_of<std::runtime_error>(e);
        } catch (...) {
            return std::make_exception_ptr(
                error(ECANCELED, "tmf::run: rolled back by an exception that is not a std::exception"));
        }
    } catch (...) { // the copy itself failed
        return std::make_exception_ptr(std::bad_alloc());
    }
}

} // namespace detail

// ---- transactions ----

class transaction {
public:
    transaction() : transaction(detail::default_store()) {}
    explicit transaction(tm_store *st) : st_(st)
    {
        detail::check(tm_store_begin(st), "tmf::transaction: tm_begin");
        frame_ = {st, detail::innermost, false};
        detail::innermost = &frame_;
        uncaught_ = std::uncaught_exceptions();
    }
    transaction(const transaction &) = delete;
    transaction &operator=(const transaction &) = delete;

    ~transaction()
    {
        if (!open_)
            return;
        bool outermost = !detail::enclosing(frame_.up, st_);
        if (outermost && std::uncaught_exceptions() > uncaught_ && detail::malloc_in_arena())
            std::fputs("tmfalloc: an exception left a tmf::transaction under the preload: it lives in the "
                       "arena and cannot outlive the rollback; let it leave through tmf::run instead\n",
                       stderr);
        end_failed();
    }

    // The outermost level commits (tmf::error when that fails: the store then
    // rolled it back); a nested one ends its level.  Throws
    // tmf::error(ECANCELED) after rolling back when a nested level failed.
    void commit()
    {
        if (!open_)
            throw error(TM_ENOTX, "tmf::transaction::commit: the transaction has ended");
        if (frame_.doomed) {
            end_failed();
            throw error(ECANCELED, "tmf::transaction::commit: rolled back, a nested transaction failed");
        }
        unlink();
        detail::check(tm_store_commit(st_), "tmf::transaction::commit: tm_commit");
    }

    tm_store *store() const noexcept { return st_; }

private:
    template <class F>
    friend std::invoke_result_t<F &> run(tm_store *st, F &&f);

    // Inside run's handler: when this level is to abort and the exception
    // lives in the arena (rule 2), a copy of it made outside; else null.
    std::exception_ptr relay() noexcept
    {
        if (open_ && !detail::enclosing(frame_.up, st_) && detail::malloc_in_arena())
            return detail::relay_current();
        return nullptr;
    }

    void unlink() noexcept
    {
        open_ = false;
        detail::innermost = frame_.up; // guards end in reverse order
    }

    // The outermost level aborts; a nested one dooms the level around it and
    // only counts the store's nesting down.
    void end_failed() noexcept
    {
        unlink();
        if (detail::frame *outer = detail::enclosing(frame_.up, st_)) {
            outer->doomed = true;
            tm_store_commit(st_);
        } else {
            tm_store_abort(st_);
        }
    }

    tm_store *st_;
    detail::frame frame_{};
    int uncaught_ = 0;
    bool open_ = true;
};

class read_transaction {
public:
    read_transaction() : read_transaction(detail::default_store()) {}
    explicit read_transaction(tm_store *st) : st_(st)
    {
        detail::check(tm_store_read_begin(st), "tmf::read_transaction: tm_read_begin");
    }
    ~read_transaction() { tm_store_read_end(st_); }
    read_transaction(const read_transaction &) = delete;
    read_transaction &operator=(const read_transaction &) = delete;

    tm_store *store() const noexcept { return st_; }

private:
    tm_store *st_;
};

template <class F>
std::invoke_result_t<F &> run(tm_store *st, F &&f)
{
    using R = std::invoke_result_t<F &>;
    std::exception_ptr copy;
    {
        transaction tx(st);
        try {
            if constexpr (std::is_void_v<R>) {
                std::invoke(f);
                tx.commit();
                return;
            } else {
                R r = std::invoke(f);
                tx.commit();
                if constexpr (std::is_reference_v<R>)
                    return static_cast<R>(r);
                else
                    return r;
            }
        } catch (...) {
            if (!(copy = tx.relay()))
                throw; // tx's destructor ends the level (rule 1)
        } // the original, in the arena, ends here, while the transaction holds it
    } // tx's destructor aborts
    std::rethrow_exception(copy);
}

template <class F>
std::invoke_result_t<F &> run(F &&f)
{
    return run(detail::default_store(), std::forward<F>(f));
}

// ---- the root block, root<T> and named<T> ----

namespace detail {

// FNV-1a, 64 bits.
inline std::uint64_t hash(std::string_view s) noexcept
{
    std::uint64_t h = 0xcbf29ce484222325u;
    for (char c : s)
        h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3u;
    return h;
}

struct type_stamp {
    std::uint64_t size, align;
    std::uint64_t name; // hash of the mangled name; 0: unknown (no RTTI)
};

template <class T>
type_stamp stamp_of() noexcept
{
#if defined(__cpp_rtti) || defined(__GXX_RTTI)
    return {sizeof(T), alignof(T), hash(typeid(T).name())};
#else
    return {sizeof(T), alignof(T), 0};
#endif
}

inline void check_stamp(const type_stamp &have, const type_stamp &want, const char *what, std::string_view name)
{
    if (have.size == want.size && have.align == want.align &&
        (have.name == want.name || !have.name || !want.name))
        return;
    std::string msg = std::string(what) + (name.empty() ? "" : " \"" + std::string(name) + "\"") +
                      ": the store holds another type (" + std::to_string(have.size) + " bytes, alignment " +
                      std::to_string(have.align) + ") than asked for (" + std::to_string(want.size) +
                      " bytes, alignment " + std::to_string(want.align) + ")";
    fail(EINVAL, msg.c_str());
}

// One named object; the name's bytes follow it (no NUL).
struct name_entry {       // offset
    name_entry *next;     //  0  the entry made before it
    void *object;         //  8
    type_stamp type;      // 16
    std::uint64_t hash;   // 40  of the name
    std::uint64_t length; // 48  of the name
};

// The store's root object when this header owns it.  Zero when new; the
// magic and version are set by the first construction, and each field is
// written inside a write transaction.
struct root_block {       // offset
    char magic[8];        //  0  "tmf::c++"
    std::uint64_t version; //  8  1
    void *object;         // 16  root<T>'s object, in a block of its own
    type_stamp type;      // 24  its type
    name_entry *names;    // 48  the named objects, newest first
    std::uint64_t spare;  // 56  zero
};

static_assert(sizeof(void *) == 8, "tmfalloc supports 64-bit targets only");
static_assert(sizeof(name_entry) == 56 && sizeof(root_block) == 64, "the layout is on disk");

inline constexpr char root_magic[8] = {'t', 'm', 'f', ':', ':', 'c', '+', '+'};

// The root block of st, checked.  Inside a write transaction tm_root makes
// a zeroed root when the store has none (or a smaller one); inside a read
// transaction it cannot, and there is no block yet: null.
inline root_block *root_block_of(tm_store *st)
{
    auto *b = static_cast<root_block *>(tm_store_root(st, sizeof(root_block)));
    if (!b && errno == TM_EREADTX)
        return nullptr;
    if (!b)
        fail(errno, "tmf: tm_root");
    if (std::memcmp(b->magic, root_magic, sizeof root_magic) == 0) {
        if (b->version != 1)
            fail(TM_EVERSION, "tmf: the store's C++ root block has a newer version");
        return b;
    }
    static const root_block zero{};
    if (std::memcmp(b, &zero, sizeof zero) != 0)
        fail(EINVAL, "tmf: the store's root is not a C++ root block (C code uses tm_root)");
    return b;
}

// Inside the write transaction: the root block, marked as ours.
inline root_block *claim_root(tm_store *st)
{
    root_block *b = root_block_of(st);
    if (b->version == 0) {
        std::memcpy(b->magic, root_magic, sizeof root_magic);
        b->version = 1;
    }
    return b;
}

// Inside the write transaction: a new T in a block of its own.  Should T's
// constructor throw, the transaction rolls the block back.
template <class T, class... Args>
T *construct(tm_store *st, Args &&...args)
{
    void *p = allocate(st, sizeof(T), alignof(T), "tmf: constructing an object");
    if constexpr (std::is_constructible_v<T, Args...>)
        return ::new (p) T(std::forward<Args>(args)...);
    else
        return ::new (p) T{std::forward<Args>(args)...};
}

template <class T>
T *find_root(tm_store *st)
{
    root_block *b = root_block_of(st);
    if (!b || !b->object)
        return nullptr;
    check_stamp(b->type, stamp_of<T>(), "tmf::root<T>", {});
    return static_cast<T *>(b->object);
}

inline const char *name_of(const name_entry *e) noexcept
{
    return reinterpret_cast<const char *>(e) + sizeof *e;
}

template <class T>
T *find_named(tm_store *st, std::string_view name)
{
    std::uint64_t h = hash(name);
    root_block *b = root_block_of(st);
    for (name_entry *e = b ? b->names : nullptr; e; e = e->next)
        if (e->hash == h && e->length == name.size() && std::memcmp(name_of(e), name.data(), name.size()) == 0) {
            check_stamp(e->type, stamp_of<T>(), "tmf::named<T>", name);
            return static_cast<T *>(e->object);
        }
    return nullptr;
}

// A lookup under a read transaction, else construction under a write one
// that looks again first (another thread or process may have been first).
template <class Find, class Make>
auto &find_or_make(tm_store *st, Find find, Make make)
{
    {
        read_transaction rt(st);
        if (auto *p = find())
            return *p;
    }
    return run(st, [&]() -> decltype(*find()) {
        if (auto *p = find())
            return *p;
        return make();
    });
}

template <class... A>
struct first_is_store : std::false_type {};
template <class A0, class... A>
struct first_is_store<A0, A...> : std::is_same<std::decay_t<A0>, tm_store *> {};

template <class T>
inline constexpr bool storable =
    std::is_object_v<T> && !std::is_array_v<T> && !std::is_const_v<T> && !std::is_volatile_v<T>;

} // namespace detail

template <class T, class... Args>
T &root(tm_store *st, Args &&...args)
{
    static_assert(detail::storable<T>, "tmf::root<T>: T must be a non-array, non-cv object type");
    return detail::find_or_make(
        st, [st] { return detail::find_root<T>(st); },
        [&]() -> T & {
            T *p = detail::construct<T>(st, std::forward<Args>(args)...);
            detail::root_block *b = detail::claim_root(st);
            b->type = detail::stamp_of<T>();
            b->object = p;
            return *p;
        });
}

template <class T, class... Args, std::enable_if_t<!detail::first_is_store<Args...>::value, int> = 0>
T &root(Args &&...args)
{
    return root<T>(detail::default_store(), std::forward<Args>(args)...);
}

template <class T, class... Args>
T &named(tm_store *st, std::string_view name, Args &&...args)
{
    static_assert(detail::storable<T>, "tmf::named<T>: T must be a non-array, non-cv object type");
    return detail::find_or_make(
        st, [st, name] { return detail::find_named<T>(st, name); },
        [&]() -> T & {
            using detail::name_entry;
            T *p = detail::construct<T>(st, std::forward<Args>(args)...);
            void *mem = detail::allocate(st, sizeof(name_entry) + name.size(), alignof(name_entry),
                                         "tmf::named<T>");
            auto *e = ::new (mem) name_entry{nullptr, p, detail::stamp_of<T>(), detail::hash(name), name.size()};
            if (!name.empty())
                std::memcpy(static_cast<char *>(mem) + sizeof(name_entry), name.data(), name.size());
            detail::root_block *b = detail::claim_root(st);
            e->next = b->names;
            b->names = e;
            return *p;
        });
}

template <class T, class... Args>
T &named(std::string_view name, Args &&...args)
{
    return named<T>(detail::default_store(), name, std::forward<Args>(args)...);
}

// ---- allocators ----

// Store void: the default store.  Store tm_store: an explicit store (rule 5).
template <class T, class Store = void>
class allocator {
    static_assert(std::is_void_v<Store>, "tmf::allocator<T, Store>: Store is void or tm_store");

public:
    using value_type = T;
    using is_always_equal = std::true_type;
    using propagate_on_container_move_assignment = std::true_type;

    constexpr allocator() noexcept = default;
    template <class U>
    constexpr allocator(const allocator<U> &) noexcept {}

    T *allocate(std::size_t n) { return detail::allocate_n<T>(nullptr, n); }
    void deallocate(T *p, std::size_t) noexcept { tm_free(p); }
};

template <class T, class U>
constexpr bool operator==(const allocator<T> &, const allocator<U> &) noexcept
{
    return true;
}

template <class T, class U>
constexpr bool operator!=(const allocator<T> &, const allocator<U> &) noexcept
{
    return false;
}

template <class T>
class allocator<T, tm_store> {
public:
    using value_type = T;

    allocator() noexcept
    {
        if (tm_store *st = tm_store_of(this))
            base_ = tm_store_base(st);
    }
    allocator(tm_store *st) noexcept : base_(st ? tm_store_base(st) : nullptr) {}
    template <class U>
    allocator(const allocator<U, tm_store> &o) noexcept : base_(o.base())
    {
    }

    T *allocate(std::size_t n) { return detail::allocate_n<T>(store(), n); }
    void deallocate(T *p, std::size_t) noexcept { tm_free(p); }

    // The open handle of its store.
    tm_store *store() const
    {
        tm_store *st = tm_store_of(base_ ? base_ : this);
        if (!st)
            detail::fail(base_ ? ENXIO : EINVAL, base_ ? "tmf::store_allocator: its store is not open"
                                                       : "tmf::store_allocator: made outside any store and "
                                                         "given none");
        return st;
    }
    // The base address of its store; null when it was given none.
    void *base() const noexcept { return base_; }

private:
    void *base_ = nullptr;
};

template <class T, class U>
bool operator==(const allocator<T, tm_store> &a, const allocator<U, tm_store> &b) noexcept
{
    return a.base() == b.base();
}

template <class T, class U>
bool operator!=(const allocator<T, tm_store> &a, const allocator<U, tm_store> &b) noexcept
{
    return !(a == b);
}

template <class T>
using store_allocator = allocator<T, tm_store>;

} // namespace tmf

#endif // TMFALLOC_HPP
