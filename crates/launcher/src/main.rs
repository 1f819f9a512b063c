//! `/cocoon/launcher`: PID 1 of every sealed image (see the library docs).

fn main() {
    std::process::exit(cocoon_launcher::main());
}
