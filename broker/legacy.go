package broker

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/pubg1/pubg1/broker/cluster"
	"github.com/pubg1/pubg1/broker/storage"
	"github.com/pubg1/pubg1/coordinator"
)

// Single brokers of earlier releases kept their topics, cluster ID and
// producer ID reservation in store keys of their own rather than in a
// metadata group. A broker that finds such keys writes them into its
// metadata group once, then deletes them; the partition logs stay where
// they are, as local logs keyed by topic ID.
const (
	legacyKeyTopic      = "topic/" // followed by the topic name
	legacyKeyClusterID  = "cluster/id"
	legacyKeyProducerID = "cluster/next-producer-id"
)

// legacyData is what a single broker of an earlier release stored.
type legacyData struct {
	clusterID string
	nextPID   int64 // first producer ID not yet reserved
	topics    []legacyTopic
}

type legacyTopic struct {
	Name       string            `json:"-"`
	ID         [16]byte          `json:"id"`
	Partitions int32             `json:"partitions"`
	Configs    map[string]string `json:"configs,omitempty"`
}

// readLegacyData reads an earlier release's single-broker records; nil
// when there are none.
func readLegacyData(store storage.Store) (*legacyData, error) {
	var d legacyData
	var found bool
	var decodeErr error
	err := store.Range([]byte(legacyKeyTopic), func(k, v []byte) bool {
		found = true
		t := legacyTopic{Name: string(k[len(legacyKeyTopic):])}
		if err := json.Unmarshal(v, &t); err != nil {
			decodeErr = fmt.Errorf("reading the record of topic %q: %w", t.Name, err)
			return false
		}
		d.topics = append(d.topics, t)
		return true
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("reading stored topics: %w", err)
	}
	v, err := store.Get([]byte(legacyKeyProducerID))
	switch {
	case err == nil && len(v) == 8:
		found = true
		d.nextPID = int64(binary.BigEndian.Uint64(v))
	case err == nil:
		return nil, fmt.Errorf("reading the stored producer ID reservation: %d bytes, not 8", len(v))
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("reading the stored producer ID reservation: %w", err)
	}
	if !found {
		// Brokers of a cluster stored a cluster ID of their own as
		// well, which nothing reads: the metadata has the cluster's.
		return nil, nil
	}
	v, err = store.Get([]byte(legacyKeyClusterID))
	switch {
	case err == nil:
		d.clusterID = string(v)
	case !errors.Is(err, storage.ErrNotFound):
		return nil, fmt.Errorf("reading the stored cluster ID: %w", err)
	}
	return &d, nil
}

// offsetsPartitions is the partition count of the stored
// __consumer_offsets, if there is one.
func (d *legacyData) offsetsPartitions() (int32, bool) {
	for _, t := range d.topics {
		if t.Name == coordinator.OffsetsTopic {
			return t.Partitions, true
		}
	}
	return 0, false
}

// migrateLegacy writes the earlier release's records into the metadata
// group and deletes them. Every step can be repeated: a broker that stops
// half way through repeats them at its next start. It reports false if the
// broker closed first.
func (b *Broker) migrateLegacy() bool {
	st := b.ctrl.State()
	for _, t := range b.legacy.topics {
		if mt := st.Topics[t.Name]; mt != nil && mt.ID == t.ID {
			continue
		}
		assign := make([][]int32, t.Partitions)
		for i := range assign {
			assign[i] = []int32{b.cfg.NodeID}
		}
		if !b.proposeUntilApplied(cluster.CreateTopicCommand(t.Name, t.ID, assign, t.Configs)) {
			return false
		}
	}
	// Producer IDs handed out before must never be handed out again.
	if next := b.ctrl.State().NextProducerID; next < b.legacy.nextPID {
		if !b.proposeUntilApplied(cluster.AllocProducerIDsCommand(b.legacy.nextPID - next)) {
			return false
		}
	}
	st = b.ctrl.State()
	var del []storage.KV
	for _, t := range b.legacy.topics {
		if mt := st.Topics[t.Name]; mt == nil || mt.ID != t.ID {
			// A proposal answered with an error (a name collision): keep
			// the record, and say so at every start.
			b.log.Error().Str("topic", t.Name).Msg("a topic of an earlier release could not be converted; its record is kept")
			continue
		}
		del = append(del, storage.KV{Key: []byte(legacyKeyTopic + t.Name)})
	}
	if len(del) == len(b.legacy.topics) {
		del = append(del, storage.KV{Key: []byte(legacyKeyClusterID)}, storage.KV{Key: []byte(legacyKeyProducerID)})
	}
	if err := storage.WriteKVs(b.store, del...); err != nil {
		b.log.Error().Err(err).Msg("deleting the converted records of an earlier release; they are converted again at the next start")
	}
	names := make([]string, 0, len(b.legacy.topics))
	for _, t := range b.legacy.topics {
		names = append(names, t.Name)
	}
	slices.Sort(names)
	b.log.Info().Strs("topics", names).Msg("converted an earlier release's single-broker data directory")
	return true
}
