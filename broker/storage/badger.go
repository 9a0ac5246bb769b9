package storage

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/rs/zerolog"
)

// BadgerOptions configures OpenBadger. Zero values take the defaults of
// DefaultBadgerOptions, so BadgerOptions{Dir: d, Logger: l} is a production
// configuration.
type BadgerOptions struct {
	Dir    string
	Logger zerolog.Logger

	// MemTableSize bounds one memtable (Badger keeps NumMemtables of them).
	// It also bounds one transaction (15% of it), which is why it is not
	// smaller by default: a commit round must usually fit in one.
	MemTableSize int64
	// NumMemtables is how many memtables may wait to be flushed.
	NumMemtables int
	// BlockCacheSize caches LSM blocks, which hold only keys and small
	// values; batch bytes live in the value log and are read via mmap.
	BlockCacheSize int64
	// ValueLogFileSize is the size of one value-log file, the unit that GC
	// rewrites and deletes: smaller files free disk sooner after retention.
	ValueLogFileSize int64
	// GCInterval is how often value-log GC runs (0: every minute). A
	// negative interval disables it; without GC, retention frees no disk.
	GCInterval time.Duration
	// FreeSpaceReserve is the free space, in bytes, below which partition
	// data is refused (Reserve): room left for the metadata, Raft's
	// terms and votes, and Badger's flushes, so that a full disk never
	// makes a write fail half-way (Badger writes its logs through memory
	// maps, where a full disk is a crash, not an error). Zero: the
	// default, DefaultFreeSpaceReserve; negative: no reserve.
	FreeSpaceReserve int64
	// PageOutInterval is how often the cold pages of the value log are
	// handed back to the kernel (see pageout_linux.go; 0: every second). A
	// negative interval leaves them mapped until memory pressure.
	PageOutInterval time.Duration
}

// DefaultFreeSpaceReserve is the free-space reserve of a broker's store.
const DefaultFreeSpaceReserve = 128 << 20

// Defaults for a broker on a machine of about 24 GiB: Badger's own defaults
// would hold 5 memtables of 64 MiB and a 256 MiB block cache per store.
const (
	defaultMemTableSize     = 64 << 20
	defaultNumMemtables     = 3
	defaultBlockCacheSize   = 64 << 20
	defaultValueLogFileSize = 256 << 20
	defaultGCInterval       = time.Minute
	defaultPageOutInterval  = time.Second

	// valueThreshold sends record batches to the value log: kept in the
	// LSM tree, 16 KiB batches cost ×60 write amplification (DESIGN.md).
	valueThreshold = 1 << 10
	gcDiscardRatio = 0.5
	// deleteChunk bounds the keys one retention transaction deletes.
	deleteChunk = 1024
)

// DefaultBadgerOptions returns the options a broker runs with.
func DefaultBadgerOptions(dir string, logger zerolog.Logger) BadgerOptions {
	return BadgerOptions{
		Dir:              dir,
		Logger:           logger,
		MemTableSize:     defaultMemTableSize,
		NumMemtables:     defaultNumMemtables,
		BlockCacheSize:   defaultBlockCacheSize,
		ValueLogFileSize: defaultValueLogFileSize,
		GCInterval:       defaultGCInterval,
	}
}

// Validate reports options OpenBadger cannot use.
func (o BadgerOptions) Validate() error {
	switch {
	case o.Dir == "":
		return fmt.Errorf("%w: BadgerOptions.Dir is empty", ErrInvalid)
	case o.MemTableSize < 0, o.NumMemtables < 0, o.BlockCacheSize < 0:
		return fmt.Errorf("%w: negative BadgerOptions size", ErrInvalid)
	case o.ValueLogFileSize != 0 && (o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30):
		return fmt.Errorf("%w: BadgerOptions.ValueLogFileSize %d not in [1 MiB, 2 GiB)", ErrInvalid, o.ValueLogFileSize)
	}
	return nil
}

func (o BadgerOptions) withDefaults() BadgerOptions {
	if o.MemTableSize == 0 {
		o.MemTableSize = defaultMemTableSize
	}
	if o.NumMemtables == 0 {
		o.NumMemtables = defaultNumMemtables
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = defaultBlockCacheSize
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = defaultValueLogFileSize
	}
	if o.GCInterval == 0 {
		o.GCInterval = defaultGCInterval
	}
	if o.PageOutInterval == 0 {
		o.PageOutInterval = defaultPageOutInterval
	}
	if o.FreeSpaceReserve == 0 {
		o.FreeSpaceReserve = DefaultFreeSpaceReserve
	}
	return o
}

// Badger is the durable Store: one Badger DB for every log of a broker.
type Badger struct {
	db       *badger.DB
	log      zerolog.Logger
	maxValue int64
	c        *committer
	space    *space

	// keyBuf holds the keys of one commit round. Only the committer
	// goroutine touches it, and Badger copies keys during Commit.
	keyBuf []byte
	// prefetch is for benchmarks comparing iterator prefetching.
	prefetch bool

	gcStop chan struct{}
	wg     sync.WaitGroup
	// commits counts the rounds committed, so that the value log's pages
	// are looked at only after something was written.
	commits atomic.Uint64

	// life keeps reads from running into a closed DB: reads hold it shared.
	life   sync.RWMutex
	closed bool

	closeOnce sync.Once
	closeErr  error
}

var _ Store = (*Badger)(nil)

// OpenBadger opens (or creates) the store in opts.Dir and starts its
// committer and value-log GC goroutines; Close stops them.
func OpenBadger(opts BadgerOptions) (*Badger, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	logger := opts.Logger.With().Str("component", "badger").Logger()

	bo := badger.DefaultOptions(opts.Dir).
		WithLogger(badgerLogger{logger}).
		WithLoggingLevel(badger.WARNING).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithValueThreshold(valueThreshold).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(opts.NumMemtables).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithNumCompactors(2). // Badger's minimum; the machine has 2 cores
		WithMetricsEnabled(false)
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("storage: open badger in %s: %w", opts.Dir, err)
	}

	b := &Badger{
		db:       db,
		log:      logger,
		maxValue: opts.ValueLogFileSize,
		gcStop:   make(chan struct{}),
		space:    newSpace(opts.Dir, opts.FreeSpaceReserve, logger),
	}
	b.c = startCommitter(b.check, b.commit)
	b.c.onFail = func(err error) {
		logger.Error().Err(err).Msg("a commit to the data directory failed: the store takes no more partition data")
	}
	if opts.GCInterval > 0 {
		b.wg.Go(func() { b.runGC(opts.GCInterval) })
	}
	if opts.PageOutInterval > 0 {
		// The kernel names mapped files by their resolved paths.
		dir, err := filepath.Abs(opts.Dir)
		if err == nil {
			dir, err = filepath.EvalSymlinks(dir)
		}
		if err != nil {
			logger.Warn().Err(err).Msg("cannot resolve the data directory: the value log stays resident")
		} else {
			b.wg.Go(func() { b.runPageOut(dir, opts.PageOutInterval) })
		}
	}
	return b, nil
}

// Submit implements Store.
func (b *Badger) Submit(w *Write) { b.c.submit(w) }

// Reserve implements Store.
func (b *Badger) Reserve(n int) error {
	if err := b.c.failure(); err != nil {
		return err
	}
	return b.space.Reserve(n)
}

// Failed implements Store.
func (b *Badger) Failed() error { return b.c.failure() }

// SpaceLow implements Store.
func (b *Badger) SpaceLow() bool { return b.space.Low() }

// Close implements Store: it commits what is queued, stops the goroutines,
// and closes the DB.
func (b *Badger) Close() error {
	b.closeOnce.Do(func() {
		b.c.close()
		close(b.gcStop)
		b.wg.Wait()
		b.life.Lock()
		b.closed = true
		b.life.Unlock()
		if err := b.db.Close(); err != nil {
			b.closeErr = fmt.Errorf("storage: close badger: %w", err)
		}
	})
	return b.closeErr
}

func (b *Badger) check(w *Write) error {
	if err := checkWrite(w); err != nil {
		return err
	}
	for i := range w.Batches {
		if n := int64(len(w.Batches[i].Data)); n >= b.maxValue {
			return fmt.Errorf("%w: batch of %d bytes exceeds value log file size %d", ErrInvalid, n, b.maxValue)
		}
	}
	return nil
}

// commit writes one round in one transaction, so one sync covers it. A round
// that exceeds Badger's transaction limit continues in a fresh transaction;
// every part is synced before commit returns.
//
// Rounds are committed one at a time. Queuing the next round (CommitWith)
// while one syncs was measured and was not faster: Badger syncs its memtable
// WAL once per queued commit, so the extra, smaller rounds cost more syncs.
func (b *Badger) commit(ws []*Write) error {
	n := 0
	for _, w := range ws {
		n += (len(w.Remove) + len(w.Batches)) * batchKeyLen
		for i := range w.KVs {
			n += 1 + len(w.KVs[i].Key)
		}
	}
	if n == 0 {
		return nil // only barriers: earlier rounds are already synced
	}
	// Sized up front: keys must not move while the transaction holds them.
	if cap(b.keyBuf) < n {
		b.keyBuf = make([]byte, 0, n)
	}
	buf := b.keyBuf[:0]
	defer func() {
		if cap(b.keyBuf) > 4<<20 {
			b.keyBuf = nil // do not pin one oversized round's buffer
		}
	}()

	txn := b.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	put := func(key, value []byte, del bool) error {
		op := func() error {
			if del {
				return txn.Delete(key)
			}
			return txn.Set(key, value)
		}
		err := op()
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = b.db.NewTransaction(true)
			err = op()
		}
		return err
	}

	for _, w := range ws {
		for _, r := range w.Remove {
			start := len(buf)
			buf = appendBatchKey(buf, r.Log, r.Meta)
			if err := put(buf[start:], nil, true); err != nil {
				return fmt.Errorf("storage: commit: %w", err)
			}
		}
		for i := range w.Batches {
			bt := &w.Batches[i]
			start := len(buf)
			buf = appendBatchKey(buf, bt.Log, bt.Meta)
			if err := put(buf[start:], bt.Data, false); err != nil {
				return fmt.Errorf("storage: commit: %w", err)
			}
		}
		for i := range w.KVs {
			kv := &w.KVs[i]
			start := len(buf)
			buf = appendKVKey(buf, kv.Key)
			if err := put(buf[start:], kv.Value, kv.Value == nil); err != nil {
				return fmt.Errorf("storage: commit: %w", err)
			}
		}
	}
	if err := txn.Commit(); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	b.commits.Add(1)
	return nil
}

// view runs fn in a read-only transaction unless the store is closed.
func (b *Badger) view(fn func(txn *badger.Txn) error) error {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.closed {
		return ErrClosed
	}
	return b.db.View(fn)
}

// Scan implements Store. Values are passed straight from Badger (the value
// log is mmapped), without a copy.
func (b *Badger) Scan(log LogID, from int64, fn func(m BatchMeta, data []byte) bool) error {
	err := b.view(func(txn *badger.Txn) error {
		iopt := badger.IteratorOptions{
			Prefix:         appendBatchPrefix(nil, log),
			PrefetchValues: b.prefetch,
			PrefetchSize:   4,
		}
		it := txn.NewIterator(iopt)
		defer it.Close()
		more := true
		for it.Seek(appendSeekKey(nil, log, from)); more && it.Valid(); it.Next() {
			item := it.Item()
			m, err := decodeBatchKey(item.Key())
			if err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error {
				more = fn(m, v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: scan: %w", err)
	}
	return nil
}

// Index implements Store with a key-only iteration: the meta is in the key.
func (b *Badger) Index(log LogID, fn func(m BatchMeta) bool) error {
	err := b.view(func(txn *badger.Txn) error {
		prefix := appendBatchPrefix(nil, log)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			m, err := decodeBatchKey(it.Item().Key())
			if err != nil {
				return err
			}
			if !fn(m) {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: index: %w", err)
	}
	return nil
}

// DeleteBatches implements Store.
func (b *Badger) DeleteBatches(log LogID, before int64) error {
	if err := b.deleteBatches(log, before, false); err != nil {
		return fmt.Errorf("storage: delete batches: %w", err)
	}
	return nil
}

// DropLog implements Store. It deletes keys in bounded transactions rather
// than with db.DropPrefix, which stops all writes and flushes the memtables:
// that would stall the group commit of every other partition.
func (b *Badger) DropLog(log LogID) error {
	if err := b.deleteBatches(log, 0, true); err != nil {
		return fmt.Errorf("storage: drop log: %w", err)
	}
	return nil
}

// deleteBatches deletes the batch keys of log with LastOffset < before (all
// of them if all), deleteChunk keys per transaction. Each pass resumes after
// the last deleted key so it does not wade through its own tombstones.
func (b *Badger) deleteBatches(log LogID, before int64, all bool) error {
	b.life.RLock()
	defer b.life.RUnlock()
	if b.closed {
		return ErrClosed
	}
	prefix := appendBatchPrefix(nil, log)
	seek := prefix
	for {
		var keys [][]byte
		err := b.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(seek); it.Valid() && len(keys) < deleteChunk; it.Next() {
				k := it.Item().Key()
				m, err := decodeBatchKey(k)
				if err != nil {
					return err
				}
				if !all && m.LastOffset >= before {
					break
				}
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(keys) == 0 {
			return nil
		}
		if err := b.deleteKeys(keys); err != nil {
			return err
		}
		if len(keys) < deleteChunk {
			return nil
		}
		seek = append(keys[len(keys)-1], 0) // the next key after the last one
	}
}

func (b *Badger) deleteKeys(keys [][]byte) error {
	txn := b.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, k := range keys {
		err := txn.Delete(k)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := txn.Commit(); err != nil {
				return err
			}
			txn = b.db.NewTransaction(true)
			err = txn.Delete(k)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

// Get implements Store.
func (b *Badger) Get(key []byte) ([]byte, error) {
	var v []byte
	err := b.view(func(txn *badger.Txn) error {
		item, err := txn.Get(appendKVKey(nil, key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, ErrNotFound
	case err != nil:
		return nil, fmt.Errorf("storage: get: %w", err)
	}
	return v, nil
}

// Range implements Store.
// KeyBounds implements Store with two key-only seeks.
func (b *Badger) KeyBounds(prefix []byte) (first, last []byte, ok bool, err error) {
	full := appendKVKey(nil, prefix)
	err = b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: full})
		it.Rewind()
		if it.Valid() {
			first, ok = it.Item().KeyCopy(nil)[1:], true
		}
		it.Close()
		if !ok {
			return nil
		}
		rit := txn.NewIterator(badger.IteratorOptions{Prefix: full, Reverse: true})
		defer rit.Close()
		// In reverse, seek past every key with the prefix: the prefix
		// followed by 0xff bytes sorts after them all.
		rit.Seek(append(append([]byte(nil), full...), bytes.Repeat([]byte{0xff}, 32)...))
		if rit.Valid() {
			last = rit.Item().KeyCopy(nil)[1:]
		}
		return nil
	})
	if err != nil {
		return nil, nil, false, fmt.Errorf("storage: key bounds: %w", err)
	}
	return first, last, ok, nil
}

func (b *Badger) Range(prefix []byte, fn func(k, v []byte) bool) error {
	err := b.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: appendKVKey(nil, prefix)})
		defer it.Close()
		more := true
		for it.Rewind(); more && it.Valid(); it.Next() {
			item := it.Item()
			if err := item.Value(func(v []byte) error {
				more = fn(item.Key()[1:], v)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: range: %w", err)
	}
	return nil
}

// runGC rewrites value-log files that are mostly garbage, so that retention
// and overwritten keys free disk. Deleting a key only marks its value dead.
func (b *Badger) runGC(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-b.gcStop:
			return
		case <-t.C:
		}
		// One call rewrites at most one file; keep going while it finds work.
		for {
			err := b.db.RunValueLogGC(gcDiscardRatio)
			if err != nil {
				if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
					b.log.Warn().Err(err).Msg("value log gc")
				}
				break
			}
			select {
			case <-b.gcStop:
				return
			default:
			}
		}
	}
}

// runPageOut hands the value log's cold pages back to the kernel every
// interval (see pageout_linux.go).
func (b *Badger) runPageOut(dir string, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	warned := false
	var seen uint64
	for {
		select {
		case <-b.gcStop:
			return
		case <-t.C:
		}
		// An idle store skips the pass: asking the kernel about every
		// page of the newest file is not free.
		n := b.commits.Load()
		if n == seen {
			continue
		}
		seen = n
		_, err := pageOutValueLog(dir)
		switch {
		case errors.Is(err, errPageOutUnsupported):
			b.log.Info().Err(err).Msg("the value log stays resident until memory pressure")
			return
		case err != nil && !warned:
			b.log.Warn().Err(err).Msg("handing the value log's cold pages back to the kernel")
			warned = true
		}
	}
}

// badgerLogger routes Badger's log lines to zerolog; Badger's info and debug
// chatter (table opens, compactions, every write) go below warn.
type badgerLogger struct{ l zerolog.Logger }

func (a badgerLogger) Errorf(f string, v ...any) {
	a.l.Error().Msgf(strings.TrimSuffix(f, "\n"), v...)
}

func (a badgerLogger) Warningf(f string, v ...any) {
	a.l.Warn().Msgf(strings.TrimSuffix(f, "\n"), v...)
}

func (a badgerLogger) Infof(f string, v ...any) {
	a.l.Debug().Msgf(strings.TrimSuffix(f, "\n"), v...)
}

func (a badgerLogger) Debugf(f string, v ...any) {
	a.l.Trace().Msgf(strings.TrimSuffix(f, "\n"), v...)
}
