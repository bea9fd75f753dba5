//! bench-dns: a UDP DNS server on loopback that answers every TXT question with
//! one fixed record (default `v=STSv1; id=bench1`, the id gen-state writes), so a
//! benchmarked mtastsd's background TXT re-checks succeed at once with an unchanged
//! id, as most re-checks do in production, and need no network.

use std::net::UdpSocket;
use std::process::ExitCode;

use clap::Parser;

/// Answer every TXT query with one record.
#[derive(Debug, Parser)]
#[command(name = "bench-dns", version)]
struct Args {
    /// UDP address to answer on.
    #[arg(long, default_value = "127.0.0.1:8453")]
    listen: String,
    /// The TXT record's text.
    #[arg(long, default_value = "v=STSv1; id=bench1")]
    txt: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let socket = match UdpSocket::bind(&args.listen) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bench-dns: {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!(
        "bench-dns: answering TXT {:?} on udp:{}",
        args.txt,
        socket
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    );
    let mut buf = [0u8; 4096];
    let mut answered: u64 = 0;
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("bench-dns: {e}");
                continue;
            }
        };
        if let Some(reply) = socketmap_load::dns::answer(&buf[..n], args.txt.as_bytes()) {
            if socket.send_to(&reply, from).is_ok() {
                answered += 1;
                if answered.is_power_of_two() && answered >= 1024 {
                    eprintln!("bench-dns: {answered} answers");
                }
            }
        }
    }
}
