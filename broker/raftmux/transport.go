package raftmux

import (
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Transport is a Raft group's transport: hashicorp/raft's NetworkTransport
// over the group's Layer, except that heartbeats travel in the broker-wide
// batches of the mux.
type Transport struct {
	*raft.NetworkTransport
	layer *Layer
}

// NewTransport returns the transport of the layer's group. maxPool and
// timeout are those of raft.NetworkTransportConfig.
func (l *Layer) NewTransport(maxPool int, timeout time.Duration) *Transport {
	nt := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: l, MaxPool: maxPool, Timeout: timeout, Logger: hclog.NewNullLogger(),
	})
	return &Transport{NetworkTransport: nt, layer: l}
}

// AppendEntries implements raft.Transport.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if isHeartbeat(args) {
		return t.layer.mux.heartbeat(target, t.layer.group, args, resp)
	}
	return t.NetworkTransport.AppendEntries(id, target, args, resp)
}

// SetHeartbeatHandler implements raft.Transport: batched heartbeats and
// any that still arrive on the group's own streams take the same path.
func (t *Transport) SetHeartbeatHandler(cb func(rpc raft.RPC)) {
	t.layer.hbMu.Lock()
	t.layer.hbFn = cb
	t.layer.hbMu.Unlock()
	t.NetworkTransport.SetHeartbeatHandler(cb)
}
