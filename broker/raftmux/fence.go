package raftmux

import (
	"errors"
	"sync"

	"github.com/hashicorp/raft"
)

// ErrFenced is returned for a vote request or a campaign of a member that
// is fenced (see Transport.Fence).
var ErrFenced = errors.New("raftmux: member has no state of its own and has not caught up with a leader")

// bootstrapIndex is the last index of a group that holds nothing but its
// bootstrap configuration (hashicorp/raft writes it at index 1, term 1).
const bootstrapIndex = 1

// LogReader reads a group's log, to check a fenced member's catch-up.
type LogReader interface {
	GetLog(index uint64, log *raft.Log) error
}

// fence is the state of a member that started without any Raft state of
// its own: a new member, or one whose data directory was lost.
type fence struct {
	logs LogReader
	// onLift is called once, just before the fence is lifted.
	onLift func(reason string)

	mu sync.Mutex
	// evidence is set once anything shows the group existed before this
	// member started: then the member may have voted or acknowledged
	// entries it no longer has, and must not vote until it has caught up.
	evidence bool
	lifting  bool // onLift is being told
	lifted   bool
	// known is set when the member's data directory is known to have
	// replaced one that held the group: it lost state it had.
	known bool
}

// Fence makes a member that starts without Raft state of its own take no
// part in elections until it has caught up with a leader. Such a member
// may be a replaced disk: before, it voted and acknowledged entries that a
// majority counted on, and with an empty log it would vote for a candidate
// missing them. So once anything shows the group has a history (an append
// or heartbeat from a leader, a vote request from a candidate whose log
// holds more than the bootstrap configuration, a snapshot), the member
// grants no vote, sends no vote request and refuses leadership (a
// transfer, a Campaign), until an append it accepted brought its log to
// the leader's commit index and that entry is of the leader's term (so the
// commit index covers everything committed before). Until then, a group
// that shows no history is a new one: its members vote among themselves
// as usual, but only for candidates that have no history either.
//
// With known, the group's history is known already (the member's data
// directory replaced one that held the group): the member is fenced from
// the start.
//
// Call Fence before the group starts (before raft.NewRaft reads the
// transport's Consumer). onLift is told, once, just before the fence is
// lifted (caught up, or Unfence), and may block briefly: a caller that
// keeps the fence across restarts records the lift there.
func (t *Transport) Fence(logs LogReader, known bool, onLift func(reason string)) {
	t.fence = &fence{logs: logs, onLift: onLift, evidence: known, known: known}
}

// Fenced reports whether the member may not vote or lead yet: it is
// fenced and the group has shown a history.
func (t *Transport) Fenced() bool {
	f := t.fence
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.evidence && !f.lifted
}

// status is what the member's heartbeat answers tell its leader (see
// KeepMembers): hbLost while it is known to have lost state it had and has
// not caught up, hbCatchingUp while it is fenced otherwise (it started
// without state in a group with a history), hbOK after.
func (f *fence) status() byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.lifted || !f.evidence:
		return hbOK
	case f.known:
		return hbLost
	}
	return hbCatchingUp
}

// Unfence lifts the fence without waiting for a catch-up: the operator's
// explicit choice (an unclean leader election) to let this member vote and
// lead with the log it has.
func (t *Transport) Unfence(reason string) {
	if t.fence != nil {
		t.fence.lift(reason)
	}
}

func (f *fence) lift(reason string) {
	f.mu.Lock()
	if f.lifted || f.lifting {
		f.mu.Unlock()
		return
	}
	f.lifting = true
	f.mu.Unlock()
	// Told first, so that a caller that records the fence durably has
	// recorded the lift before the member votes.
	if f.onLift != nil {
		f.onLift(reason)
	}
	f.mu.Lock()
	f.lifted = true
	f.mu.Unlock()
}

// active reports whether the fence still stands (lifted or not, evidence
// or not).
func (f *fence) active() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.lifted
}

// leading is told that the member sends appends, so leads: elected
// before the group showed a history, it was elected in a new group and
// needs no fence.
func (f *fence) leading() {
	f.mu.Lock()
	lift := !f.lifted && !f.evidence
	f.mu.Unlock()
	if lift {
		f.lift("elected leader of a new group")
	}
}

// sawHistory notes that the group existed before this member started, and
// reports whether the fence still stands.
func (f *fence) sawHistory() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evidence = true
	return !f.lifted
}

// refuses reports whether a vote for a candidate with this last log entry
// must be refused, noting the history the request shows.
func (f *fence) refuses(lastIndex, lastTerm uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lifted {
		return false
	}
	if lastIndex > bootstrapIndex || lastTerm > 1 {
		f.evidence = true
	}
	return f.evidence
}

// caughtUp checks an accepted append: the member's log reaches the
// leader's commit index, and the entry there is of the leader's term.
func (f *fence) caughtUp(req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) bool {
	// The answer's LastLog is the log's end before this append.
	last := max(resp.LastLog, req.PrevLogEntry)
	if n := len(req.Entries); n > 0 {
		last = max(last, req.Entries[n-1].Index)
	}
	if !resp.Success || req.LeaderCommitIndex == 0 || last < req.LeaderCommitIndex {
		return false
	}
	var l raft.Log
	if err := f.logs.GetLog(req.LeaderCommitIndex, &l); err != nil {
		return false
	}
	return l.Term == req.Term
}

// Consumer implements raft.Transport. A fenced member's requests pass
// through a relay that answers vote requests and leadership transfers
// itself and watches appends for the catch-up.
func (t *Transport) Consumer() <-chan raft.RPC {
	if t.fence == nil {
		return t.NetworkTransport.Consumer()
	}
	t.relayOnce.Do(func() {
		t.relayed = make(chan raft.RPC)
		t.relayWG.Add(1)
		go t.relay(t.NetworkTransport.Consumer())
	})
	return t.relayed
}

// relay runs until the transport stops; the transport owns it.
func (t *Transport) relay(in <-chan raft.RPC) {
	defer t.relayWG.Done()
	f := t.fence
	for {
		var rpc raft.RPC
		select {
		case rpc = <-in:
		case <-t.stopped:
			return
		}
		if f.active() {
			switch req := rpc.Command.(type) {
			case *raft.RequestVoteRequest:
				if f.refuses(req.LastLogIndex, req.LastLogTerm) {
					rpc.Respond(&raft.RequestVoteResponse{RPCHeader: header(t), Term: req.Term}, nil)
					continue
				}
			case *raft.RequestPreVoteRequest:
				if f.refuses(req.LastLogIndex, req.LastLogTerm) {
					rpc.Respond(&raft.RequestPreVoteResponse{RPCHeader: header(t), Term: req.Term}, nil)
					continue
				}
			case *raft.TimeoutNowRequest:
				// From itself it is Campaign, which checks the fence;
				// from another member it is a leadership transfer, so
				// the group has a leader and a history.
				if string(req.Addr) != string(t.LocalAddr()) && f.sawHistory() {
					rpc.Respond(nil, ErrFenced)
					continue
				}
			case *raft.InstallSnapshotRequest:
				f.sawHistory()
			case *raft.AppendEntriesRequest:
				f.sawHistory()
				rpc = t.watchAppend(rpc, req)
			}
		}
		select {
		case t.relayed <- rpc:
		case <-t.stopped:
			return
		}
	}
}

// watchAppend passes the append's answer on to its sender once Raft has
// given it, lifting the fence if it shows the member caught up.
func (t *Transport) watchAppend(rpc raft.RPC, req *raft.AppendEntriesRequest) raft.RPC {
	orig := rpc.RespChan
	ch := make(chan raft.RPCResponse, 1)
	rpc.RespChan = ch
	t.relayWG.Add(1)
	go func() {
		defer t.relayWG.Done()
		select {
		case r := <-ch:
			if resp, ok := r.Response.(*raft.AppendEntriesResponse); ok && r.Error == nil && t.fence.caughtUp(req, resp) {
				t.fence.lift("caught up with the leader")
			}
			orig <- r
		case <-t.stopped:
		}
	}()
	return rpc
}

func header(t *Transport) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, Addr: []byte(t.LocalAddr())}
}

// fencedHeartbeat wraps the group's heartbeat handler: a heartbeat comes
// from a leader, so it shows the group's history.
func (t *Transport) fencedHeartbeat(cb func(raft.RPC)) func(raft.RPC) {
	if t.fence == nil || cb == nil {
		return cb
	}
	return func(rpc raft.RPC) {
		t.fence.sawHistory()
		cb(rpc)
	}
}
