//! The message catalogue (`locales/`) is compiled into the binary by
//! `fluent_templates::static_loader!`; this tells cargo to rebuild when any `.ftl` changes.

fn main() {
    println!("cargo:rerun-if-changed=locales");
}
