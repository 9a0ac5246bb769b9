//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names of everything a namespaced cluster creates carry the supervisor's
// PID, so that leftovers of a run that died can be told from those of a
// run still going: a network namespace per broker "pubg1b-PID-ID", the
// host end of its veth pair "pg1vPID.ID" (interface names are at most 15
// bytes) and the bridge "pg1bPID".
const (
	nsPrefix     = "pubg1b-"
	vethPrefix   = "pg1v"
	bridgePrefix = "pg1b"
	// netnsBase is the private range the namespaces' /24 is taken from.
	netnsBase = "10.241.0.0/16"
	// netnsPort is the port every namespaced broker listens on: each has
	// an address of its own.
	netnsPort = 9092
)

// netnsNet is the network of a namespaced cluster: broker i (1-based) in
// namespace ns[i-1] with address addrs[i-1] on a /24 whose .254 is the
// bridge in the root namespace, so the client reaches every broker.
type netnsNet struct {
	pid    int
	bridge string
	prefix netip.Prefix
	ns     []string
	veths  []string
	addrs  []netip.Addr

	mu   sync.Mutex
	cuts map[[2]int]bool // broker index pairs (lower first) cut apart
}

// ipCmd runs ip(8) with args and returns an error with its output.
func ipCmd(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench: ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ipOut runs ip(8) with args and returns its output.
func ipOut(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil {
		return "", fmt.Errorf("bench: ip %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// ipDeleteLink deletes a link; one already gone is no error: deleting a
// namespace removes the veth pair with it, a moment later.
func ipDeleteLink(ctx context.Context, name string) error {
	err := ipCmd(ctx, "link", "delete", name)
	if err != nil && strings.Contains(err.Error(), "Cannot find device") {
		return nil
	}
	return err
}

// netnsSupported says why namespaces cannot be used here, nil if they can.
func netnsSupported() error {
	if os.Geteuid() != 0 {
		return errors.New("bench: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("bench: network namespaces need ip(8) from iproute2: %w", err)
	}
	return nil
}

// pidAlive reports whether a process with this PID exists.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// ownerPid parses the supervisor PID out of a name made by this file,
// ok false if the name is not one of ours.
func ownerPid(name string) (int, bool) {
	var rest string
	switch {
	case strings.HasPrefix(name, nsPrefix):
		rest, _, _ = strings.Cut(name[len(nsPrefix):], "-")
	case strings.HasPrefix(name, vethPrefix):
		rest, _, _ = strings.Cut(name[len(vethPrefix):], ".")
	case strings.HasPrefix(name, bridgePrefix):
		rest = name[len(bridgePrefix):]
	default:
		return 0, false
	}
	pid, err := strconv.Atoi(rest)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// cleanupLeftovers deletes namespaces, veths and bridges of earlier runs
// whose supervisor is gone (a crash, a killed test binary).
func cleanupLeftovers(ctx context.Context) error {
	var errs []error
	out, err := ipOut(ctx, "netns", "list")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if pid, ok := ownerPid(f[0]); ok && strings.HasPrefix(f[0], nsPrefix) && !pidAlive(pid) {
			if err := ipCmd(ctx, "netns", "delete", f[0]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	links, err := ipOut(ctx, "-o", "link", "show")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(links, "\n") {
		// "12: pg1v123.1@if2: <...>"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if pid, ok := ownerPid(name); ok && !pidAlive(pid) {
			if err := ipDeleteLink(ctx, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// namesOf lists the namespaces and links named for supervisor pid.
func namesOf(ctx context.Context, pid int) ([]string, error) {
	var out []string
	for _, args := range [][]string{{"netns", "list"}, {"-o", "link", "show"}} {
		s, err := ipOut(ctx, args...)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(s, "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			name := f[0]
			if args[0] == "-o" {
				if len(f) < 2 {
					continue
				}
				name, _, _ = strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			}
			if p, ok := ownerPid(name); ok && p == pid {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// freeSubnet picks a /24 of netnsBase that no route or address of the
// root namespace overlaps, starting from one derived from pid so that
// concurrent runs rarely try the same one.
func freeSubnet(ctx context.Context, pid int) (netip.Prefix, error) {
	var used []netip.Prefix
	for _, args := range [][]string{{"-4", "route", "show", "table", "all"}, {"-4", "-o", "addr", "show"}} {
		out, err := ipOut(ctx, args...)
		if err != nil {
			return netip.Prefix{}, err
		}
		for _, line := range strings.Split(out, "\n") {
			for _, tok := range strings.Fields(line) {
				if p, err := netip.ParsePrefix(tok); err == nil {
					used = append(used, p.Masked())
				} else if a, err := netip.ParseAddr(tok); err == nil && a.Is4() {
					used = append(used, netip.PrefixFrom(a, 32))
				}
			}
		}
	}
	base := netip.MustParsePrefix(netnsBase).Addr().As4()
	for i := range 254 {
		third := byte(1 + (pid+i)%254)
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], third, 0}), 24)
		free := true
		for _, u := range used {
			// A default route (0.0.0.0/0) overlaps everything but does
			// not make an address unusable.
			if u.Bits() > 0 && u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("bench: no free /24 in %s", netnsBase)
}

// newNetns creates n namespaces on a bridge. On error whatever was created
// is removed again.
func newNetns(ctx context.Context, n int) (_ *netnsNet, err error) {
	if err := netnsSupported(); err != nil {
		return nil, err
	}
	if err := cleanupLeftovers(ctx); err != nil {
		return nil, fmt.Errorf("bench: removing leftovers of an earlier run: %w", err)
	}
	pid := os.Getpid()
	// Names carry only the PID: one namespaced cluster per process at a
	// time.
	if mine, err := namesOf(ctx, pid); err != nil {
		return nil, err
	} else if len(mine) > 0 {
		return nil, fmt.Errorf("bench: network namespaces or links of pid %d exist already (another namespaced cluster of this process, or leftovers of a dead one with the same PID): %v", pid, mine)
	}
	prefix, err := freeSubnet(ctx, pid)
	if err != nil {
		return nil, err
	}
	nn := &netnsNet{pid: pid, bridge: fmt.Sprintf("%s%d", bridgePrefix, pid), prefix: prefix, cuts: map[[2]int]bool{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, nn.close())
		}
	}()
	hostAddr := nn.hostAddr()
	for _, args := range [][]string{
		{"link", "add", nn.bridge, "type", "bridge"},
		{"addr", "add", netip.PrefixFrom(hostAddr, 24).String(), "dev", nn.bridge},
		{"link", "set", nn.bridge, "up"},
	} {
		if err := ipCmd(ctx, args...); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s%d-%d", nsPrefix, pid, i)
		veth := fmt.Sprintf("%s%d.%d", vethPrefix, pid, i)
		a4 := prefix.Addr().As4()
		a4[3] = byte(i)
		addr := netip.AddrFrom4(a4)
		if err := ipCmd(ctx, "netns", "add", ns); err != nil {
			return nil, err
		}
		nn.ns = append(nn.ns, ns)
		if err := ipCmd(ctx, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns); err != nil {
			return nil, err
		}
		nn.veths = append(nn.veths, veth)
		nn.addrs = append(nn.addrs, addr)
		for _, args := range [][]string{
			{"link", "set", veth, "master", nn.bridge, "up"},
			{"-n", ns, "addr", "add", netip.PrefixFrom(addr, 24).String(), "dev", "eth0"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "route", "add", "default", "via", hostAddr.String()},
		} {
			if err := ipCmd(ctx, args...); err != nil {
				return nil, err
			}
		}
	}
	return nn, nil
}

// hostAddr is the bridge's address, the root namespace's side.
func (nn *netnsNet) hostAddr() netip.Addr {
	a4 := nn.prefix.Addr().As4()
	a4[3] = 254
	return netip.AddrFrom4(a4)
}

// addr is the client address of broker i (0-based).
func (nn *netnsNet) addr(i int) string {
	return netip.AddrPortFrom(nn.addrs[i], netnsPort).String()
}

// prefixCmd runs a broker inside the namespace of broker i (0-based).
// ip netns exec execs the command, so the PID is the broker's.
func (nn *netnsNet) prefixCmd(i int) []string {
	return []string{"ip", "netns", "exec", nn.ns[i]}
}

// blackhole adds (or, with del, removes) a route in broker i's namespace
// that drops everything it sends to broker j. Dropping the replies too
// (j's route to i) makes the cut symmetric, a silent partition: a route
// change invalidates the routes cached by established sockets, so TCP
// connections between the two stop passing data at once (their
// retransmissions vanish; nothing resets them), and new connections
// fail with EINVAL at the sender. The brokers' failure detectors mark
// each other down within PeerDeadAfter (1.5 s by default).
func (nn *netnsNet) blackhole(ctx context.Context, i, j int, del bool) error {
	op := "add"
	if del {
		op = "delete"
	}
	return ipCmd(ctx, "-n", nn.ns[i], "route", op, "blackhole", netip.PrefixFrom(nn.addrs[j], 32).String())
}

// cut drops packets between brokers i and j (0-based) both ways; the
// client still reaches both.
func (nn *netnsNet) cut(ctx context.Context, i, j int) error {
	if i == j {
		return nil
	}
	key := [2]int{min(i, j), max(i, j)}
	nn.mu.Lock()
	defer nn.mu.Unlock()
	if nn.cuts[key] {
		return nil
	}
	if err := nn.blackhole(ctx, i, j, false); err != nil {
		return err
	}
	if err := nn.blackhole(ctx, j, i, false); err != nil {
		return errors.Join(err, nn.blackhole(ctx, i, j, true))
	}
	nn.cuts[key] = true
	return nil
}

// heal removes every cut.
func (nn *netnsNet) heal(ctx context.Context) error {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	var errs []error
	for key := range nn.cuts {
		err := errors.Join(nn.blackhole(ctx, key[0], key[1], true), nn.blackhole(ctx, key[1], key[0], true))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		delete(nn.cuts, key)
	}
	return errors.Join(errs...)
}

// cutPairs lists the cut pairs (0-based, lower first).
func (nn *netnsNet) cutPairs() [][2]int {
	nn.mu.Lock()
	defer nn.mu.Unlock()
	var out [][2]int
	for k := range nn.cuts {
		out = append(out, k)
	}
	return out
}

// close deletes the namespaces, veths and bridge; the brokers must have
// exited (a namespace lives on while a process is in it).
func (nn *netnsNet) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	for _, ns := range nn.ns {
		if err := ipCmd(ctx, "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	// Deleting a namespace takes its veth end and so the pair with it;
	// delete the host ends still there.
	links, err := ipOut(ctx, "-o", "link", "show")
	if err != nil {
		errs = append(errs, err)
	}
	for _, v := range append(append([]string(nil), nn.veths...), nn.bridge) {
		if strings.Contains(links, " "+v+"@") || strings.Contains(links, " "+v+":") {
			if err := ipDeleteLink(ctx, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	nn.ns, nn.veths = nil, nil
	return errors.Join(errs...)
}
