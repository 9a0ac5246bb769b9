package compattests

// Helpers the in-process drivers of the compatibility matrix (sarama,
// kafka-go, kcat) share to build their output lines (DRIVERS.md).

import (
	"encoding/json"
	"sort"
	"sync"
)

// Named forms of the anonymous element types of metadataLine and
// groupsLine; their values are assignable to those elements.
type (
	brokerEntry struct {
		ID   int32  `json:"id"`
		Host string `json:"host"`
		Port int32  `json:"port"`
	}
	partitionEntry struct {
		P      int32 `json:"p"`
		Leader int32 `json:"leader"`
	}
	memberEntry struct {
		MemberID   string `json:"member_id"`
		ClientID   string `json:"client_id"`
		ClientHost string `json:"client_host"`
	}
)

func (m *metadataLine) addBroker(id int32, host string, port int32) {
	m.Brokers = append(m.Brokers, brokerEntry{ID: id, Host: host, Port: port})
}

func (m *metadataLine) addPartition(p, leader int32) {
	m.Partitions = append(m.Partitions, partitionEntry{P: p, Leader: leader})
}

// sortPartitions orders the partitions by number, as DRIVERS.md asks.
func (m *metadataLine) sortPartitions() {
	sort.Slice(m.Partitions, func(i, j int) bool { return m.Partitions[i].P < m.Partitions[j].P })
}

func (g *groupsLine) addMember(memberID, clientID, clientHost string) {
	g.Members = append(g.Members, memberEntry{MemberID: memberID, ClientID: clientID, ClientHost: clientHost})
}

// newRecordLine is the line of a consumed record without its headers; a
// nil key or value is printed as null.
func newRecordLine(partition int32, offset int64, key, value []byte, ts int64) recordLine {
	l := recordLine{P: partition, O: offset, Ts: ts, H: [][2]string{}}
	if key != nil {
		k := string(key)
		l.K = &k
	}
	if value != nil {
		v := string(value)
		l.V = &v
	}
	return l
}

// lockedLine serializes the calls of line, which the drivers make from
// their clients' goroutines.
func lockedLine(line func(json.RawMessage)) func(json.RawMessage) {
	var mu sync.Mutex
	return func(raw json.RawMessage) {
		mu.Lock()
		defer mu.Unlock()
		line(raw)
	}
}
