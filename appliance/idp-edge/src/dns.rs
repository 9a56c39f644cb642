//! The lab's DNS answer: a small authoritative server for the names of
//! [`idp_core::names`], on sockets the caller has bound.
//!
//! Like every server of idp-lab it is a constructor: [`serve`] takes a bound UDP socket,
//! a bound TCP listener, the [`Answers`] and a shutdown future, and runs until the future
//! completes. Only the daemon binds sockets.
//!
//! What each query gets (the class must be `IN`, the opcode `QUERY`):
//!
//! | query                                                        | answer                                  |
//! | ------------------------------------------------------------ | --------------------------------------- |
//! | `A` for a name answering an IPv4 address                     | NOERROR, one `A` record ([`TTL`])       |
//! | `AAAA` for a name answering an IPv6 address                  | NOERROR, one `AAAA` record ([`TTL`])    |
//! | `A` for an IPv6 name, `AAAA` for an IPv4 name                | NOERROR, no records (NODATA)            |
//! | any other type (`SOA`, `NS`, `TXT`, `MX`, ...) for our names | NOERROR, no records (NODATA)            |
//! | `ANY` for our names                                          | NOTIMP (RFC 8482 allows refusing `ANY`) |
//! | a name in our zones encoding no address, with names under it that do (the zone apex `nip.io`, partial dotted forms like `0.1.nip.io`) | NOERROR, no records (NODATA) |
//! | any other name in our zones encoding no address (`www.nip.io`) | NXDOMAIN                              |
//! | a name in none of our zones, [`Answers::forward`] empty      | REFUSED                                 |
//! | a name in none of our zones, [`Answers::forward`] set        | relayed from the first resolver that answers (UDP, then TCP if truncated; [`FORWARD_TIMEOUT`] each); SERVFAIL if none does |
//! | a class other than `IN`, or an opcode other than `QUERY`     | REFUSED, NOTIMP                         |
//! | not exactly one question                                     | FORMERR                                 |
//! | EDNS version above 0                                         | BADVERS                                 |
//! | a packet shorter than a header, or a response                | nothing                                 |
//! | a packet that does not parse after its header                | FORMERR, the bare 12-byte header        |
//!
//! Answers for our zones are authoritative (`AA`) and carry no SOA: negative answers are
//! not cached, which suits a lab whose names never change meaning. Over UDP a response is
//! kept within 512 bytes, or the client's EDNS size capped at [`MAX_UDP_PAYLOAD`], and
//! truncated (`TC`) beyond that. Every query is logged at debug level (target
//! `idp_edge::dns`): source, protocol, name, type, response code and answer count.
//!
//! Forwarding is the only way out: with no [`Answers::forward`] the server never asks
//! anyone else, so it cannot be abused as an open resolver.

use std::future::Future;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{Edns, Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::{Server, net::NetError};
use idp_core::names::{Answer, Zones};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::EdgeError;

/// The time to live of every address record, in seconds.
pub const TTL: u32 = 300;

/// How long one upstream resolver is given to answer a forwarded query.
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The largest UDP response, whatever size the client's EDNS allows (the DNS flag day
/// 2020 value, which avoids IP fragmentation).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// How long an idle TCP connection is kept open.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the server answers: the lab's zones, and where other names are forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answers {
    /// The zones served with their addresses.
    pub zones: Zones,
    /// The resolvers queries for other names are forwarded to, tried in order
    /// (`network.dns_forward`). Empty: other names are refused.
    pub forward: Vec<SocketAddr>,
}

impl Answers {
    /// Answers for `zones`, refusing every other name.
    pub fn new(zones: Zones) -> Answers {
        Answers { zones, forward: Vec::new() }
    }

    /// The same answers, forwarding other names to `resolvers`.
    pub fn with_forward(self, resolvers: Vec<SocketAddr>) -> Answers {
        Answers { forward: resolvers, ..self }
    }
}

/// Serves `answers` on `udp` and `tcp` until `shutdown` completes, then stops accepting
/// queries, drops open connections and returns.
///
/// Fails when a socket fails for good before the shutdown.
pub async fn serve(udp: UdpSocket, tcp: TcpListener, answers: Answers, shutdown: impl Future<Output = ()>) -> Result<(), EdgeError> {
    let mut server = Server::new(Handler { answers });
    server.register_socket(udp);
    server.register_listener(tcp, TCP_IDLE_TIMEOUT, 16);
    tokio::select! {
        () = shutdown => {}
        // Every task ended before the shutdown: a socket failed.
        result = server.block_until_done() => {
            return match result {
                Ok(()) => Err(EdgeError::Dns { reason: "the DNS sockets closed before the shutdown".into() }),
                Err(error) => Err(net_error(error)),
            };
        }
    }
    server.shutdown_gracefully().await.map_err(net_error)
}

fn net_error(error: NetError) -> EdgeError {
    EdgeError::Dns { reason: error.to_string() }
}

/// What [`Answers::zones`] says about a question, in DNS terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Local {
    /// The address record for it.
    Record(IpAddr),
    /// NOERROR with no records.
    NoData,
    /// NXDOMAIN.
    NxDomain,
    /// Not ours.
    NotOurs,
}

/// The local answer to `name` (presentation form) for `qtype`.
fn local(zones: &Zones, name: &str, qtype: RecordType) -> Local {
    match zones.answer(name) {
        Answer::Address(address) => match (qtype, address) {
            (RecordType::A, IpAddr::V4(_)) | (RecordType::AAAA, IpAddr::V6(_)) => Local::Record(address),
            _ => Local::NoData,
        },
        Answer::NoAddress if has_addresses_below(zones, name) => Local::NoData,
        Answer::NoAddress => Local::NxDomain,
        Answer::NotOurs => Local::NotOurs,
    }
}

/// Whether some name under `name` answers an address, so that `name` exists as an empty
/// non-terminal and must not be NXDOMAIN (RFC 8020: nothing exists below an NXDOMAIN).
///
/// Only the dotted form spreads an address over several labels, so a name one to four
/// `0.` labels longer tells.
fn has_addresses_below(zones: &Zones, name: &str) -> bool {
    let mut longer = name.to_owned();
    (0..4).any(|_| {
        longer.insert_str(0, "0.");
        matches!(zones.answer(&longer), Answer::Address(_))
    })
}

/// A name in the presentation form [`Zones::answer`] reads, or `None` when a label holds a
/// dot or is not UTF-8 (no name of ours).
fn presentation(name: &Name) -> Option<String> {
    let labels =
        name.iter().map(|label| std::str::from_utf8(label).ok().filter(|label| !label.contains('.'))).collect::<Option<Vec<_>>>()?;
    Some(labels.join("."))
}

struct Handler {
    answers: Answers,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, mut response: R) -> ResponseInfo {
        let info = match self.respond(request, &mut response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(target: "idp_edge::dns", src = %request.src(), %error, "failed to send the response");
                let mut metadata = Metadata::response_from_request(&request.metadata);
                metadata.response_code = ResponseCode::ServFail;
                return ResponseInfo::from(hickory_server::proto::op::Header { metadata, counts: Default::default() });
            }
        };
        // The name and type are formatted only when the line is wanted (it is per query).
        if tracing::enabled!(target: "idp_edge::dns", tracing::Level::DEBUG) {
            let query = request.queries.queries().first();
            let name = query.map(|query| query.original().name().to_string()).unwrap_or_default();
            let qtype = query.map(|query| query.query_type().to_string()).unwrap_or_default();
            tracing::debug!(
                target: "idp_edge::dns",
                src = %request.src(),
                proto = %request.protocol(),
                %name,
                %qtype,
                rcode = %info.response_code,
                answers = info.counts().answers,
                "query"
            );
        }
        info
    }
}

impl Handler {
    async fn respond<R: ResponseHandler>(&self, request: &Request, response: &mut R) -> Result<ResponseInfo, NetError> {
        let edns = request.edns.as_ref().map(|edns| {
            let mut ours = Edns::new();
            ours.set_max_payload(edns.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            ours.set_version(0);
            ours
        });
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let refusal = if request.metadata.message_type != MessageType::Query {
            Some(ResponseCode::FormErr)
        } else if request.metadata.op_code != OpCode::Query {
            Some(ResponseCode::NotImp)
        } else if request.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
            Some(ResponseCode::BADVERS)
        } else if request.queries.queries().len() != 1 {
            Some(ResponseCode::FormErr)
        } else {
            None
        };
        let (None, [query]) = (refusal, request.queries.queries()) else {
            let rcode = refusal.unwrap_or(ResponseCode::FormErr);
            return response.send_response(builder.error_msg(&request.metadata, rcode)).await;
        };
        let original = query.original();
        let local = match presentation(original.name()) {
            Some(name) => local(&self.answers.zones, &name, query.query_type()),
            None => Local::NotOurs,
        };
        let local = if query.query_class() != DNSClass::IN { Local::NotOurs } else { local };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = true;
        match local {
            Local::Record(address) => {
                let rdata = match address {
                    IpAddr::V4(v4) => RData::A(A(v4)),
                    IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
                };
                let record = Record::from_rdata(original.name().clone(), TTL, rdata);
                let records = [record];
                response.send_response(builder.build(metadata, records.iter(), [], [], [])).await
            }
            _ if local != Local::NotOurs && query.query_type() == RecordType::ANY => {
                response.send_response(builder.error_msg(&request.metadata, ResponseCode::NotImp)).await
            }
            Local::NoData => response.send_response(builder.build_no_records(metadata)).await,
            Local::NxDomain => {
                metadata.response_code = ResponseCode::NXDomain;
                response.send_response(builder.build_no_records(metadata)).await
            }
            Local::NotOurs if self.answers.forward.is_empty() || query.query_class() != DNSClass::IN => {
                response.send_response(builder.error_msg(&request.metadata, ResponseCode::Refused)).await
            }
            Local::NotOurs => match forward(&self.answers.forward, request.as_slice()).await {
                Some(upstream) => {
                    let mut metadata = Metadata::response_from_request(&request.metadata);
                    metadata.response_code = upstream.metadata.response_code;
                    metadata.recursion_available = upstream.metadata.recursion_available;
                    metadata.truncation = upstream.metadata.truncation;
                    let built =
                        builder.build(metadata, upstream.answers.iter(), upstream.authorities.iter(), [], upstream.additionals.iter());
                    response.send_response(built).await
                }
                None => response.send_response(builder.error_msg(&request.metadata, ResponseCode::ServFail)).await,
            },
        }
    }
}

/// The answer of the first of `resolvers` that answers `query` (a raw DNS message).
async fn forward(resolvers: &[SocketAddr], query: &[u8]) -> Option<Message> {
    for &resolver in resolvers {
        match forward_to(resolver, query).await {
            Ok(message) => return Some(message),
            Err(reason) => tracing::debug!(target: "idp_edge::dns", %resolver, %reason, "forwarding failed"),
        }
    }
    None
}

/// `query` relayed to `resolver` over UDP under a fresh id, and over TCP when the UDP
/// answer is truncated.
async fn forward_to(resolver: SocketAddr, query: &[u8]) -> Result<Message, String> {
    if query.len() < 12 {
        return Err("query shorter than a header".into());
    }
    let id = (RandomState::new().hash_one(resolver) & 0xffff) as u16;
    let mut relayed = query.to_vec();
    relayed[..2].copy_from_slice(&id.to_be_bytes());
    let message =
        tokio::time::timeout(FORWARD_TIMEOUT, forward_udp(resolver, &relayed, id)).await.map_err(|_| "timed out over UDP".to_owned())??;
    if !message.metadata.truncation {
        return Ok(message);
    }
    tokio::time::timeout(FORWARD_TIMEOUT, forward_tcp(resolver, &relayed, id)).await.map_err(|_| "timed out over TCP".to_owned())?
}

async fn forward_udp(resolver: SocketAddr, relayed: &[u8], id: u16) -> Result<Message, String> {
    let any: IpAddr = if resolver.is_ipv4() { Ipv4Addr::UNSPECIFIED.into() } else { Ipv6Addr::UNSPECIFIED.into() };
    let socket = UdpSocket::bind((any, 0)).await.map_err(|error| error.to_string())?;
    socket.send_to(relayed, resolver).await.map_err(|error| error.to_string())?;
    let mut buffer = vec![0; 65535];
    loop {
        let (len, from) = socket.recv_from(&mut buffer).await.map_err(|error| error.to_string())?;
        // Anything not from the resolver, or not answering our id, is ignored.
        if from != resolver {
            continue;
        }
        match Message::from_vec(&buffer[..len]) {
            Ok(message) if message.metadata.id == id && message.metadata.message_type == MessageType::Response => return Ok(message),
            _ => continue,
        }
    }
}

async fn forward_tcp(resolver: SocketAddr, relayed: &[u8], id: u16) -> Result<Message, String> {
    let io = |error: std::io::Error| error.to_string();
    let mut stream = TcpStream::connect(resolver).await.map_err(io)?;
    let len = u16::try_from(relayed.len()).map_err(|_| "query too long".to_owned())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(relayed);
    stream.write_all(&framed).await.map_err(io)?;
    let len = stream.read_u16().await.map_err(io)?;
    let mut buffer = vec![0; usize::from(len)];
    stream.read_exact(&mut buffer).await.map_err(io)?;
    let message = Message::from_vec(&buffer).map_err(|error| error.to_string())?;
    if message.metadata.id != id {
        return Err("answer for another id".into());
    }
    Ok(message)
}

#[cfg(test)]
mod tests;
