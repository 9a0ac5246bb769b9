package broker

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/storage"
)

// keyIncarnation holds the data directory's ID, written when the store is
// first opened.
const keyIncarnation = "broker/incarnation"

// loadIncarnation returns the store's ID, creating it if the store has none
// (a new or wiped data directory, or one of an earlier release).
func loadIncarnation(store storage.Store) (id string, created bool, err error) {
	v, err := store.Get([]byte(keyIncarnation))
	switch {
	case err == nil:
		return string(v), false, nil
	case !errors.Is(err, storage.ErrNotFound):
		return "", false, fmt.Errorf("reading the data directory's ID: %w", err)
	}
	var u [16]byte
	_, _ = rand.Read(u[:])
	id = hex.EncodeToString(u[:])
	if err := storage.WriteKVs(store, storage.KV{Key: []byte(keyIncarnation), Value: []byte(id)}); err != nil {
		return "", false, fmt.Errorf("writing the data directory's ID: %w", err)
	}
	return id, true, nil
}

// lostData tracks whether this broker's data directory replaced one the
// cluster knew under the same broker ID, and which partitions existed
// before this directory was recorded: their replicas here start empty
// where the cluster expects data, so they must catch up from a leader
// before they vote or lead.
type lostData struct {
	self        int32
	incarnation string

	mu       sync.Mutex
	replaced string             // the ID the cluster knew, once seen
	existing map[[16]byte]int32 // partitions per topic before registration
}

// note looks at each applied metadata state (in order, from the
// controller's watcher) and reports whether it newly found the directory
// replaced.
func (l *lostData) note(st *cluster.State) (found bool) {
	known := st.Incarnations[l.self]
	if known == "" || known == l.incarnation {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	found = l.replaced == ""
	l.replaced = known
	if l.existing == nil {
		l.existing = make(map[[16]byte]int32)
	}
	for _, t := range st.Topics {
		l.existing[t.ID] = max(l.existing[t.ID], int32(len(t.Replicas)))
	}
	return found
}

// mustCatchUp reports whether this broker's replica of partition n of
// topic t, if it has no state of its own, must catch up before it votes or
// leads: the partition existed while the cluster knew this broker with
// another data directory.
func (l *lostData) mustCatchUp(st *cluster.State, t *cluster.Topic, n int32) bool {
	if known := st.Incarnations[l.self]; known != "" && known != l.incarnation {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return n < l.existing[t.ID]
}
