//! `sqlx::migrate!` embeds the migration files at compile time; a new file alone does not
//! make cargo rebuild the crate, so tell it to watch the directory.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
