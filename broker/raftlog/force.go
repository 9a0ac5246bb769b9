package raftlog

import (
	"errors"
	"fmt"

	"github.com/hashicorp/raft"
)

// forcedTermJump is how far the term of a forced configuration lies past
// every term the member has seen: a leader it did not hear of may have
// written entries at later terms, and the forced entry must not share an
// index and a term with any of them (Raft would take the two for the same
// entry).
const forcedTermJump = 1 << 20

// keyCurrentTerm is hashicorp/raft's stable-store key of the current term.
var keyCurrentTerm = []byte("CurrentTerm")

// ForceVoters appends to the log of a member whose Raft is not running a
// configuration in which every one of servers votes, at a term far past
// any it has seen, and makes that term its current one. It is the last
// resort of an unclean election in a group whose live voters are too few
// to elect anyone because its leader demoted a member that lost its data
// and then died: with it, this member counts the live non-voters' votes,
// and its log, ending at the forced term, outranks theirs.
func (st *Store) ForceVoters(servers []raft.Server) error {
	last, err := st.LastIndex()
	if err != nil || last == 0 {
		return err
	}
	var l raft.Log
	if err := st.GetLog(last, &l); err != nil {
		return fmt.Errorf("raftlog: %s: reading entry %d: %w", st.group, last, err)
	}
	cur, err := st.GetUint64(keyCurrentTerm)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("raftlog: %s: reading the current term: %w", st.group, err)
	}
	term := max(cur, l.Term) + forcedTermJump
	entry := &raft.Log{Index: last + 1, Term: term, Type: raft.LogConfiguration, Data: raft.EncodeConfiguration(raft.Configuration{Servers: servers})}
	if err := st.StoreLog(entry); err != nil {
		return fmt.Errorf("raftlog: %s: %w", st.group, err)
	}
	if err := st.SetUint64(keyCurrentTerm, term); err != nil {
		return fmt.Errorf("raftlog: %s: %w", st.group, err)
	}
	return nil
}
