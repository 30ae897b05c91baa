//! Lists the BPF filters on an interface's clsact ingress or egress hook (legacy netlink attachment), which
//! aya cannot query: one synchronous `RTM_GETTFILTER` dump on a route netlink socket opened in
//! the calling thread's network namespace.

use std::io;

use rtnetlink::{
    packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload},
    packet_route::{
        RouteNetlinkMessage,
        tc::{TcAttribute, TcFilterBpfOption, TcHandle, TcMessage, TcOption},
    },
    sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE},
};

/// One BPF filter found on clsact ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BpfFilter {
    /// The program's name as the filter reports it (`TCA_BPF_NAME`).
    pub(super) name: String,
    /// The program's id (`TCA_BPF_ID`), 0 when not reported.
    pub(super) prog_id: u32,
}

/// The BPF filters on `ifindex`'s clsact ingress; empty when the interface has no clsact qdisc.
pub(super) fn ingress_bpf_filters(ifindex: u32) -> io::Result<Vec<BpfFilter>> {
    bpf_filters(ifindex, TcHandle::MIN_INGRESS)
}

/// The BPF filters on `ifindex`'s clsact egress; empty when the interface has no clsact qdisc.
pub(super) fn egress_bpf_filters(ifindex: u32) -> io::Result<Vec<BpfFilter>> {
    bpf_filters(ifindex, TcHandle::MIN_EGRESS)
}

fn bpf_filters(ifindex: u32, hook: u16) -> io::Result<Vec<BpfFilter>> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;

    let mut request = TcMessage::default();
    request.header.index = i32::try_from(ifindex).map_err(io::Error::other)?;
    request.header.parent = TcHandle {
        major: TcHandle::INGRESS.major,
        minor: hook,
    };
    let mut msg = NetlinkMessage::from(RouteNetlinkMessage::GetTrafficFilter(request));
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.header.sequence_number = 1;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    socket.send(&buf, 0)?;

    let mut filters = Vec::new();
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..])
                .map_err(io::Error::other)?;
            let len = reply.header.length as usize;
            match reply.payload {
                NetlinkPayload::Done(_) => return Ok(filters),
                NetlinkPayload::Error(e) => match e.code {
                    None => {}
                    // No clsact qdisc (or no such device): nothing is attached.
                    Some(code) if [nix::libc::EINVAL, nix::libc::ENOENT].contains(&-code.get()) => {
                        return Ok(filters);
                    }
                    Some(_) => return Err(e.to_io()),
                },
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewTrafficFilter(tc)) => {
                    filters.extend(bpf_filter(&tc));
                }
                _ => {}
            }
            if len == 0 {
                break;
            }
            offset += len;
        }
    }
}

/// The BPF program a filter message describes, if it is a `bpf` filter with options.
fn bpf_filter(tc: &TcMessage) -> Option<BpfFilter> {
    let is_bpf = tc
        .attributes
        .iter()
        .any(|a| matches!(a, TcAttribute::Kind(kind) if kind == "bpf"));
    let options = tc.attributes.iter().find_map(|a| match a {
        TcAttribute::Options(options) => Some(options),
        _ => None,
    })?;
    let mut filter = BpfFilter {
        name: String::new(),
        prog_id: 0,
    };
    for option in options {
        match option {
            TcOption::Bpf(TcFilterBpfOption::ProgName(name)) => filter.name.clone_from(name),
            TcOption::Bpf(TcFilterBpfOption::ProgId(id)) => filter.prog_id = *id,
            _ => {}
        }
    }
    is_bpf.then_some(filter)
}
