//! The stdio transport: the real stdout is kept for protocol messages only, and the
//! pipes are driven by the reactor without the blocking pool.
//!
//! A stray `println!` anywhere in the process would corrupt the stream, so
//! [`claim_stdout`] duplicates fd 1 for the transport and points fd 1 at stderr before
//! anything else runs.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileTypeExt;
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed input stream.
pub type Input = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed output stream.
pub type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Duplicates stdout (close-on-exec) for the transport and points fd 1 at stderr, so
/// that only the transport can write to the host's pipe.
///
/// Errors: the `fcntl`/`dup2` system call failed.
pub fn claim_stdout() -> io::Result<OwnedFd> {
    let stdout = rustix::stdio::stdout();
    let stderr = rustix::stdio::stderr();
    let transport = rustix::io::fcntl_dupfd_cloexec(stdout, 3)?;
    rustix::stdio::dup2_stdout(stderr)?;
    Ok(transport)
}

/// Duplicates stdin (close-on-exec) for the transport.
///
/// Errors: the `fcntl` system call failed.
pub fn claim_stdin() -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(rustix::stdio::stdin(), 3)?)
}

/// An async reader over `fd`: a pipe or a socket is driven by the reactor
/// (non-blocking); anything else (a file, a terminal) goes through tokio's file reader.
///
/// Must run inside a tokio runtime. Errors: `fstat` or the non-blocking switch failed.
pub fn async_input(fd: OwnedFd) -> io::Result<Input> {
    let file = File::from(fd);
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() {
        Ok(Box::pin(tokio::net::unix::pipe::Receiver::from_file(file)?))
    } else if kind.is_socket() {
        Ok(Box::pin(unix_stream(file)?))
    } else {
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }
}

/// An async writer over `fd`, chosen as in [`async_input`].
///
/// Must run inside a tokio runtime. Errors: `fstat` or the non-blocking switch failed.
pub fn async_output(fd: OwnedFd) -> io::Result<Output> {
    let file = File::from(fd);
    let kind = file.metadata()?.file_type();
    if kind.is_fifo() {
        Ok(Box::pin(tokio::net::unix::pipe::Sender::from_file(file)?))
    } else if kind.is_socket() {
        Ok(Box::pin(unix_stream(file)?))
    } else {
        Ok(Box::pin(tokio::fs::File::from_std(file)))
    }
}

fn unix_stream(file: File) -> io::Result<tokio::net::UnixStream> {
    let std = std::os::unix::net::UnixStream::from(OwnedFd::from(file));
    std.set_nonblocking(true)?;
    tokio::net::UnixStream::from_std(std)
}
