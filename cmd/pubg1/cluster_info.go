package main

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

type clusterInfoCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
}

// clusterInfo is what cluster info prints.
type clusterInfo struct {
	ClusterID  string       `json:"cluster_id"`
	Controller int32        `json:"controller"`
	Brokers    []brokerInfo `json:"brokers"`
}

// brokerInfo is one broker: those the metadata lists, then those that
// partitions name as replicas but the metadata leaves out (a fenced or
// stopped broker). Reachable says whether it answered ApiVersions, and
// APIKeys how many Kafka APIs that answer lists: a broker does not send
// its software name or version (KIP-511 has only the client send them),
// so the API count is what tells brokers of different builds apart.
type brokerInfo struct {
	ID         int32  `json:"id"`
	Host       string `json:"host,omitempty"`
	Port       int32  `json:"port,omitempty"`
	Rack       string `json:"rack,omitempty"`
	Controller bool   `json:"controller"`
	Listed     bool   `json:"listed"`
	Reachable  bool   `json:"reachable"`
	APIKeys    int    `json:"api_keys,omitempty"`
	Error      string `json:"error,omitempty"`
}

func (c *clusterInfoCmd) Run() error {
	_, info, done, err := c.adminFlags.describeCluster()
	if err != nil {
		return err
	}
	defer done()
	if c.structured() {
		return c.emit(info)
	}
	fmt.Fprintf(stdout, "cluster %s  controller %s  brokers %d\n", orDash(info.ClusterID), idText(info.Controller), len(info.Brokers))
	w := table()
	fmt.Fprintln(w, "ID\tADDRESS\tRACK\tCONTROLLER\tIN-METADATA\tREACHABLE\tAPIS\tERROR")
	for _, b := range info.Brokers {
		addr := "-"
		if b.Host != "" {
			addr = fmt.Sprintf("%s:%d", b.Host, b.Port)
		}
		apis := "-"
		if b.APIKeys > 0 {
			apis = fmt.Sprint(b.APIKeys)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%v\t%v\t%v\t%s\t%s\n", b.ID, addr, orDash(b.Rack), b.Controller, b.Listed, b.Reachable, apis, orDash(b.Error))
	}
	return w.Flush()
}

// describeCluster reads the cluster's metadata and asks every broker
// whether it answers; done closes the clients.
func (a *adminFlags) describeCluster() (kadm.Metadata, clusterInfo, func(), error) {
	ctx, cl, adm, done, err := a.clients()
	if err != nil {
		return kadm.Metadata{}, clusterInfo{}, nil, err
	}
	md, err := adm.Metadata(ctx)
	if err != nil {
		done()
		return kadm.Metadata{}, clusterInfo{}, nil, fmt.Errorf("describing the cluster: %w", err)
	}
	return md, describeBrokers(ctx, cl, md), done, nil
}

// describeBrokers lists md's brokers and the replicas it names that it
// does not list, and asks each listed broker for its API versions to see
// whether it answers.
func describeBrokers(ctx context.Context, cl *kgo.Client, md kadm.Metadata) clusterInfo {
	info := clusterInfo{ClusterID: md.Cluster, Controller: md.Controller, Brokers: []brokerInfo{}}
	listed := make(map[int32]bool)
	for _, b := range md.Brokers {
		listed[b.NodeID] = true
		bi := brokerInfo{ID: b.NodeID, Host: b.Host, Port: b.Port, Controller: b.NodeID == md.Controller, Listed: true}
		if b.Rack != nil {
			bi.Rack = *b.Rack
		}
		info.Brokers = append(info.Brokers, bi)
	}
	var missing []int32
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			for _, r := range p.Replicas {
				if !listed[r] && !slices.Contains(missing, r) {
					missing = append(missing, r)
				}
			}
		}
	}
	for _, id := range missing {
		info.Brokers = append(info.Brokers, brokerInfo{ID: id, Controller: id == md.Controller, Error: "named as a replica but not listed in the metadata"})
	}
	sort.Slice(info.Brokers, func(i, j int) bool { return info.Brokers[i].ID < info.Brokers[j].ID })

	var wg sync.WaitGroup
	for i := range info.Brokers {
		b := &info.Brokers[i]
		if !b.Listed {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, leaderTimeout)
			defer cancel()
			req := kmsg.NewPtrApiVersionsRequest()
			// A request to one broker goes out as built: name the software,
			// which ApiVersions v3 and later require.
			req.ClientSoftwareName, req.ClientSoftwareVersion = "pubg1", softwareVersion()
			resp, err := cl.Broker(int(b.ID)).Request(ctx, req)
			if err != nil {
				b.Error = leaderError(ctx, err)
				return
			}
			b.Reachable = true
			if av := resp.(*kmsg.ApiVersionsResponse); av.ErrorCode == 0 {
				b.APIKeys = len(av.ApiKeys)
			}
		})
	}
	wg.Wait()
	return info
}

type clusterHealthCmd struct {
	adminFlags `embed:""`
	outputFlag `embed:""`
}

// clusterHealth is what cluster health prints. Healthy means every
// partition has a leader that answers and a full in-sync replica set.
type clusterHealth struct {
	Healthy                   bool               `json:"healthy"`
	Brokers                   []int32            `json:"brokers"`
	UnreachableBrokers        []int32            `json:"unreachable_brokers"`
	MissingBrokers            []int32            `json:"missing_brokers"`
	LeaderlessPartitions      []healthPartition  `json:"leaderless_partitions"`
	OfflinePartitions         []healthPartition  `json:"offline_partitions"`
	UnderReplicatedPartitions []healthPartition  `json:"under_replicated_partitions"`
	Errors                    []healthTopicError `json:"errors"`
}

// healthPartition names a partition with what is wrong with it.
type healthPartition struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
}

type healthTopicError struct {
	Topic string `json:"topic"`
	Error string `json:"error"`
}

func (c *clusterHealthCmd) Run() error {
	md, info, done, err := c.adminFlags.describeCluster()
	if err != nil {
		return err
	}
	defer done()
	h := clusterHealth{
		Brokers: []int32{}, UnreachableBrokers: []int32{}, MissingBrokers: []int32{},
		LeaderlessPartitions: []healthPartition{}, OfflinePartitions: []healthPartition{},
		UnderReplicatedPartitions: []healthPartition{}, Errors: []healthTopicError{},
	}
	reachable := make(map[int32]bool)
	for _, b := range info.Brokers {
		switch {
		case !b.Listed:
			h.MissingBrokers = append(h.MissingBrokers, b.ID)
		case !b.Reachable:
			h.UnreachableBrokers = append(h.UnreachableBrokers, b.ID)
		default:
			reachable[b.ID] = true
		}
		if b.Listed {
			h.Brokers = append(h.Brokers, b.ID)
		}
	}
	for _, t := range md.Topics.Sorted() {
		if t.Err != nil {
			h.Errors = append(h.Errors, healthTopicError{t.Topic, rowError(t.Err)})
			continue
		}
		for _, p := range t.Partitions.Sorted() {
			hp := healthPartition{t.Topic, p.Partition, p.Leader, orEmpty(p.Replicas), orEmpty(p.ISR)}
			switch {
			case p.Leader < 0:
				h.LeaderlessPartitions = append(h.LeaderlessPartitions, hp)
			case !reachable[p.Leader]:
				h.OfflinePartitions = append(h.OfflinePartitions, hp)
			}
			if len(p.ISR) < len(p.Replicas) {
				h.UnderReplicatedPartitions = append(h.UnderReplicatedPartitions, hp)
			}
		}
	}
	h.Healthy = len(h.UnreachableBrokers)+len(h.MissingBrokers)+len(h.LeaderlessPartitions)+
		len(h.OfflinePartitions)+len(h.UnderReplicatedPartitions)+len(h.Errors) == 0
	if c.structured() {
		err = c.emit(h)
	} else {
		err = printHealth(h)
	}
	if err != nil {
		return err
	}
	if !h.Healthy {
		return fmt.Errorf("cluster unhealthy: %d leaderless, %d offline, %d under-replicated partitions; %d unreachable and %d missing brokers",
			len(h.LeaderlessPartitions), len(h.OfflinePartitions), len(h.UnderReplicatedPartitions), len(h.UnreachableBrokers), len(h.MissingBrokers))
	}
	return nil
}

func printHealth(h clusterHealth) error {
	state := "healthy"
	if !h.Healthy {
		state = "unhealthy"
	}
	fmt.Fprintf(stdout, "cluster %s\n", state)
	w := table()
	fmt.Fprintf(w, "brokers:\t%s\n", idsText(h.Brokers))
	fmt.Fprintf(w, "unreachable brokers:\t%s\n", idsText(h.UnreachableBrokers))
	fmt.Fprintf(w, "brokers missing from metadata:\t%s\n", idsText(h.MissingBrokers))
	fmt.Fprintf(w, "leaderless partitions:\t%s\n", partitionsText(h.LeaderlessPartitions))
	fmt.Fprintf(w, "offline partitions:\t%s\n", partitionsText(h.OfflinePartitions))
	fmt.Fprintf(w, "under-replicated partitions:\t%s\n", partitionsText(h.UnderReplicatedPartitions))
	for _, e := range h.Errors {
		fmt.Fprintf(w, "topic %s:\terror: %s\n", e.Topic, e.Error)
	}
	return w.Flush()
}

func idsText(ids []int32) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Trim(fmt.Sprint(ids), "[]")
}

func partitionsText(ps []healthPartition) string {
	if len(ps) == 0 {
		return "none"
	}
	var s []string
	for _, p := range ps {
		s = append(s, fmt.Sprintf("%s/%d", p.Topic, p.Partition))
	}
	return fmt.Sprintf("%d: %s", len(ps), strings.Join(s, " "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func idText(id int32) string {
	if id < 0 {
		return "none"
	}
	return fmt.Sprint(id)
}
