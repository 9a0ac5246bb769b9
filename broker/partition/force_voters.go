package partition

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/pubg1/pubg1/broker/raftlog"
	"github.com/pubg1/pubg1/broker/storage"
)

// forcedTermJump is how far the term of a forced configuration lies past
// every term the replica has seen: a leader it did not hear of may have
// written entries at later terms, and the forced entry must not share an
// index and a term with any of them (Raft would take the two for the same
// entry).
const forcedTermJump = 1 << 20

// keyCurrentTerm is hashicorp/raft's stable-store key of the current term.
var keyCurrentTerm = []byte("CurrentTerm")

// ForceVoters appends to the log of a closed replica a configuration in
// which every one of servers votes, at a term far past any it has seen,
// and makes that term its current one. It is the last resort of an unclean
// election in a group whose live voters are too few to elect anyone
// because its leader demoted a replica that lost its data and then died:
// with it, this replica counts the live non-voters' votes, and its log,
// ending at the forced term, outranks theirs.
func ForceVoters(store storage.Store, group string, servers []raft.Server) error {
	logs, err := raftlog.Open(store, group)
	if err != nil {
		return fmt.Errorf("partition: %s: %w", group, err)
	}
	last, err := logs.LastIndex()
	if err != nil || last == 0 {
		return err
	}
	var l raft.Log
	if err := logs.GetLog(last, &l); err != nil {
		return fmt.Errorf("partition: %s: reading entry %d: %w", group, last, err)
	}
	cur, err := logs.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, raftlog.ErrNotFound) {
		return fmt.Errorf("partition: %s: reading the current term: %w", group, err)
	}
	term := max(cur, l.Term) + forcedTermJump
	entry := &raft.Log{Index: last + 1, Term: term, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(raft.Configuration{Servers: servers})}
	if err := logs.StoreLog(entry); err != nil {
		return fmt.Errorf("partition: %s: %w", group, err)
	}
	if err := logs.SetUint64(keyCurrentTerm, term); err != nil {
		return fmt.Errorf("partition: %s: %w", group, err)
	}
	return nil
}

// NeedsForcedVoters reports whether an unclean election must force this
// replica's configuration (see ForceVoters): it votes, others of the
// group do not, and it does not lead.
func (p *Replicated) NeedsForcedVoters() bool {
	if p.r.State() == raft.Leader {
		return false
	}
	f := p.r.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	self, others := false, false
	for _, s := range f.Configuration().Servers {
		switch {
		case s.ID == p.opts.ID:
			self = s.Suffrage == raft.Voter
		case s.Suffrage != raft.Voter:
			others = true
		}
	}
	return self && others
}
