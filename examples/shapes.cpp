// shapes — persistent objects with virtual functions, under the preload.
//
//   LD_PRELOAD=libtmfpreload.so shapes add circle 1.5
//   LD_PRELOAD=libtmfpreload.so shapes add rect 2 3
//   LD_PRELOAD=libtmfpreload.so shapes add square 2
//   LD_PRELOAD=libtmfpreload.so shapes list
//
// The objects of a class hierarchy live in the store: each holds a pointer
// to its class's vtable, in the program's static data, and the root holds
// a std::function made from a lambda (pointers to its code).  They work
// across restarts because the preload runs the program with the same
// addresses each time.  A rebuilt program is refused with TM_ELAYOUT,
// naming it, rather than crashing on a stale vtable.
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "tmfalloc.hpp"

namespace {

struct Shape {
    virtual ~Shape() = default;
    virtual double area() const = 0;
    virtual std::string name() const = 0;
};

struct Circle : Shape {
    double r;
    explicit Circle(double radius) : r(radius) {}
    double area() const override { return 3.14159265358979 * r * r; }
    std::string name() const override { return "circle of radius " + std::to_string(r); }
};

struct Rect : Shape {
    double w, h;
    Rect(double width, double height) : w(width), h(height) {}
    double area() const override { return w * h; }
    std::string name() const override { return "rectangle " + std::to_string(w) + " x " + std::to_string(h); }
};

struct Square : Rect {
    explicit Square(double side) : Rect(side, side) {}
    std::string name() const override { return "square of side " + std::to_string(w); }
};

struct Drawing {
    std::vector<Shape *> shapes;                 // owned
    std::function<double(double)> unit = [](double a) { return a * 10000; }; // m² to cm²
};

int usage()
{
    std::fprintf(stderr, "usage: shapes add circle R | add rect W H | add square S | list | clear\n");
    return 2;
}

Shape *make(int argc, char **argv)
{
    std::string kind = argc > 2 ? argv[2] : "";
    double a = argc > 3 ? std::atof(argv[3]) : 0, b = argc > 4 ? std::atof(argv[4]) : 0;
    if (kind == "circle" && argc == 4)
        return new Circle(a);
    if (kind == "rect" && argc == 5)
        return new Rect(a, b);
    if (kind == "square" && argc == 4)
        return new Square(a);
    return nullptr;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    std::string cmd = argv[1];
    try {
        Drawing &d = tmf::root<Drawing>();
        if (cmd == "add") {
            bool ok = tmf::run([&] {
                Shape *s = make(argc, argv);
                if (s && !tm_store_of(s)) // not in the arena: no preload
                    throw tmf::error(EINVAL, "run me with LD_PRELOAD=libtmfpreload.so");
                if (s)
                    d.shapes.push_back(s);
                return s != nullptr;
            });
            if (!ok)
                return usage();
        } else if (cmd == "clear") {
            tmf::run([&] {
                for (Shape *s : d.shapes)
                    delete s;
                d.shapes.clear();
            });
        } else if (cmd != "list") {
            return usage();
        }
        double total = 0;
        tmf::read_transaction rt;
        for (const Shape *s : d.shapes) {
            std::printf("%s: %.2f m2\n", s->name().c_str(), s->area());
            total += s->area();
        }
        std::printf("%zu shapes, %.0f cm2\n", d.shapes.size(), d.unit(total));
    } catch (const tmf::error &e) {
        std::fprintf(stderr, "shapes: %s\n", e.what());
        return 1;
    }
    return 0;
}
