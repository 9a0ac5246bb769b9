package streams

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// store is the local state store: one Badger database for the tasks of a
// processor, holding each task's windows as its changelog does (keyed by
// partition, then changelog key) and a checkpoint per partition, the
// changelog offset up to which the store holds the committed state. It is
// written only after a transaction committed, so it never holds state the
// changelog does not; after a crash it may be behind, and a restore
// replays the changelog from the checkpoint.
type store struct {
	db *badger.DB
}

func openStore(dir string, log zerolog.Logger) (*store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("streams: state directory: %w", err)
	}
	opts := badger.DefaultOptions(filepath.Join(dir, "state")).
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false). // the changelog is the durable copy
		WithNumVersionsToKeep(1).
		WithValueThreshold(1 << 10)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("streams: opening the state store: %w", err)
	}
	return &store{db: db}, nil
}

func (s *store) Close() error { return s.db.Close() }

func partPrefix(part int32) []byte { return binary.BigEndian.AppendUint32(nil, uint32(part)) }

func checkpointKey(part int32) []byte { return append(partPrefix(part), 'c') }

// checkpoint returns the changelog offset a restore of part replays from,
// or false if the store holds nothing usable of it.
func (s *store) checkpoint(part int32) (int64, bool, error) {
	var off int64
	found := false
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(checkpointKey(part))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error {
			if len(v) != 8 {
				return errBadState
			}
			off, found = int64(binary.BigEndian.Uint64(v)), true
			return nil
		})
	})
	if err != nil {
		return 0, false, fmt.Errorf("streams: reading the checkpoint of partition %d: %w", part, err)
	}
	return off, found, nil
}

// load applies the stored state of part to t.
func (s *store) load(part int32, t *task) error {
	prefix := partPrefix(part)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()[len(prefix):]
			if len(k) == 1 && k[0] == 'c' {
				continue
			}
			if err := it.Item().Value(func(v []byte) error { return t.apply(k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("streams: loading the state of partition %d: %w", part, err)
	}
	return nil
}

// drop deletes everything stored of part.
func (s *store) drop(part int32) error {
	if err := s.db.DropPrefix(partPrefix(part)); err != nil {
		return fmt.Errorf("streams: dropping the state of partition %d: %w", part, err)
	}
	return nil
}

// write stores changelog writes of part, then its checkpoint (after
// them: a crash in between leaves the old checkpoint, and the replay
// writes the same values again).
func (s *store) write(part int32, ws []write, next int64) error {
	if len(ws) > 0 {
		wb := s.db.NewWriteBatch()
		defer wb.Cancel()
		prefix := partPrefix(part)
		for _, w := range ws {
			k := append(append([]byte(nil), prefix...), w.key...)
			var err error
			if w.value == nil {
				err = wb.Delete(k)
			} else {
				err = wb.Set(k, w.value)
			}
			if err != nil {
				return fmt.Errorf("streams: storing the state of partition %d: %w", part, err)
			}
		}
		if err := wb.Flush(); err != nil {
			return fmt.Errorf("streams: storing the state of partition %d: %w", part, err)
		}
	}
	if next < 0 {
		return nil
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(checkpointKey(part), binary.BigEndian.AppendUint64(nil, uint64(next)))
	})
	if err != nil {
		return fmt.Errorf("streams: storing the checkpoint of partition %d: %w", part, err)
	}
	return nil
}

// processID returns the ID kept in dir, making one the first time: a
// processor restarted with its state directory keeps its transactional ID
// and group instance ID, so it fences its predecessor's open transaction
// and takes its place in the group at once.
func processID(dir string) (string, error) {
	path := filepath.Join(dir, "process-id")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), nil
	}
	var raw [8]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", fmt.Errorf("streams: making a process ID: %w", err)
	}
	id := hex.EncodeToString(raw[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("streams: storing the process ID: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("streams: storing the process ID: %w", err)
	}
	return id, nil
}

// badgerLogger passes Badger's log on at debug level (warnings and errors
// as such).
type badgerLogger struct{ log zerolog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.log.Error().Str("component", "badger").Msg(strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.log.Warn().Str("component", "badger").Msg(strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Infof(f string, a ...any) {
	l.log.Debug().Str("component", "badger").Msg(strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Debugf(f string, a ...any) {
	l.log.Debug().Str("component", "badger").Msg(strings.TrimSpace(fmt.Sprintf(f, a...)))
}
