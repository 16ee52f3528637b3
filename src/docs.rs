//! Documentation generated from the command-line definition in [`crate::cli`], so it can
//! never drift from the parser: shell completions (`pacsgate completions SHELL`) and man
//! pages (`pacsgate man`). The Debian package installs both (deploy/debian/build-deb.sh).

use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;

/// The completion script for `shell`, in memory: clap_complete panics on a write error,
/// and the caller's stdout may be a closed pipe.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pacsgate", &mut out);
    out
}

/// The top-level man page (section 1) as roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    Ok(out)
}

/// `pacsgate.1` and one page per subcommand (`pacsgate-storage-keygen.1`, ...) in `dir`,
/// which must exist.
pub fn man_pages_to(dir: &Path) -> std::io::Result<()> {
    clap_mangen::generate_to(Cli::command(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_name_every_subcommand() {
        let bash = String::from_utf8(completions(clap_complete::Shell::Bash)).unwrap();
        for word in ["check", "cert", "self-signed", "storage", "--force"] {
            assert!(bash.contains(word), "bash completion lacks {word}");
        }
    }

    #[test]
    fn man_page_is_roff_for_pacsgate() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(page.starts_with(".ie"), "{}", &page[..page.len().min(200)]);
        assert!(page.contains(".TH pacsgate 1"), "no title line");
        assert!(page.contains("hash\\-password"), "subcommands not listed");
        assert!(page.contains("Exit status"), "no exit status section");
    }
}
