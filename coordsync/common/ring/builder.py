"""The write side of the ring: devices, weights and rebalancing."""

import collections
import dataclasses
import json
import math
import random
import time

from coordsync import exceptions
from coordsync.common import fsutil
from coordsync.common.ring import ring

# NOTE: Swift's convention: a device holding partitions it should not
# hold at all (weight 0, being removed) has an infinite imbalance.
MAX_BALANCE = 999.99
# How many random partners a replica doubling up on a zone tries to swap
# with; enough when a partner exists (most replicas qualify), and cheap
# when zone weights force the doubling and none does.
SPREAD_TRIES = 64
# Swift's default: replication has an hour to copy a moved partition
# before a rebalance may move another replica of it.
DEFAULT_MIN_PART_HOURS = 1
# A year: beyond that the setting is a typo, not a policy.
MAX_MIN_PART_HOURS = 8760


@dataclasses.dataclass(frozen=True)
class RebalanceResult:
    """What a rebalance did.

    ``moved`` counts partition-replicas that changed device (0 on the
    first rebalance, which places everything); ``balance`` is the
    largest deviation, in percent, of a device's partition count from
    its weight-proportional share; ``undispersed`` counts partitions
    whose replicas share a zone although the ring has enough zones;
    ``held_back`` counts partition-replicas left on a device above its
    target because ``min_part_hours`` holds their partition, and
    ``wait`` is how many seconds until the first of them may move.
    """

    moved: int
    balance: float
    undispersed: int
    held_back: int = 0
    wait: float = 0.0


class RingBuilder:
    """Builds and rebalances a ring of ``2 ** part_power`` partitions.

    Each partition has ``replicas`` copies, each on a device. A
    rebalance gives every device a share of the ``partitions *
    replicas`` partition-replicas proportional to its weight and puts
    the replicas of one partition on distinct nodes, spreading them
    over as many regions and zones as it can. It moves as little as it
    can: only replicas that must leave their device are reassigned.

    It works in five steps:

    1. **Targets.** Each node's share is ``partitions * replicas *
       node weight / total weight``, capped at ``partitions`` (a node
       can hold one replica of a partition, not two); what the cap cuts
       off is shared among the other nodes by weight. Shares are then
       rounded to integers down the tree region -> zone -> node ->
       device so that each level adds up exactly.
    2. **Keep.** Every existing placement stays, except on removed or
       weightless devices. Each device above its target then sheds its
       surplus, choosing replicas of partitions that lose no other
       replica in this rebalance, then ones a device below target can
       take without a node clash, then ones whose zone holds another
       copy of the partition.
    3. **Place.** Each unplaced replica goes to a device on a node the
       partition does not use yet: among those below target, the ones
       in the least used region, then zone; within them a random pick
       (seeded) weighted by how far each is below target.
    4. **Fix.** Node clashes can leave a device below target while
       another is above. Replicas move from the latter to the former,
       preferring replicas that already moved in this rebalance; first
       only moves that keep the partition's spread, then any move.
    5. **Spread.** Partitions left with two replicas in one zone, when
       the zone weights do not force it, swap a replica that moved in
       this rebalance with one of another partition.

    Weights win over dispersion: they are capacity, and a full disk is
    worse than two copies in one zone. Nodes are never shared.

    **min_part_hours.** The builder records when each partition last
    moved (``last_moved``, epoch seconds; 0 for never, as the first
    placement is no move: there is nothing to copy yet). Until
    ``min_part_hours`` have passed since, no replica of that partition
    is moved again, and one rebalance moves at most one replica of a
    partition: replication gets the time to copy the first move before
    a second copy leaves. Replicas on removed or weightless devices
    are the exception and always move (Swift does the same). What is
    held back leaves its device above target; a later rebalance
    finishes the job (``pretend_min_part_hours_passed`` skips the
    wait). ``min_part_hours = 0`` disables all of this.

    Example: ``part_power=10, replicas=3`` over devices of weight 1, 1,
    2 and 2, one per node, on nodes in zones 1, 1, 2 and 3. The 3072
    partition-replicas split 512/512/1024/1024: every partition gets one
    replica in zone 2, one in zone 3 and one on either device of zone 1.
    Adding a fifth node with a device of weight 2 in zone 4 changes the
    targets to 384/384/768/768/768. Each old device sheds exactly its
    surplus (128, 128, 256, 256), the new device takes those 768 and
    nothing else moves. Had we instead removed the zone 3 device, the
    weights 1, 1, 2 would ask 1536 replicas of the weight-2 node, more
    than the 1024 partitions there are; it is capped at 1024 and the
    other two get 1024 each, so every partition is on all three nodes.
    With one more node gone, rebalance fails: ``replicas (3) > nodes
    (2)``.

    The ring file written by ``save`` is what daemons load with
    ``coordsync.common.ring.Ring``; nothing changes for them until a rebalance
    is saved. Removing a device therefore only marks it: it keeps
    serving its partitions until the next rebalance moves them away.
    """

    def __init__(self, part_power, replicas, devices=(), assignment=None,
                 *, min_part_hours=DEFAULT_MIN_PART_HOURS, last_moved=None):
        self._install({
            'format': ring.FORMAT, 'version': ring.VERSION,
            'part_power': part_power, 'replicas': replicas,
            'devices': list(devices), 'assignment': assignment,
            'min_part_hours': min_part_hours, 'last_moved': last_moved})

    @classmethod
    def load(cls, path):
        """Load a builder from a ring file (validated like any ring).

        A file written before ``min_part_hours`` existed loads with the
        default and every partition "moved long ago".
        """
        raw, _stamp = ring.read_ring_json(path)
        builder = cls.__new__(cls)
        try:
            builder._install(raw)
        except exceptions.RingError as err:
            raise exceptions.RingError('invalid ring file %s: %s' % (
                path, err)) from err
        return builder

    def _install(self, raw):
        data = ring.validate_ring_data(raw)
        min_part_hours = check_min_part_hours(
            raw.get('min_part_hours', DEFAULT_MIN_PART_HOURS))
        last_moved = _check_last_moved(raw.get('last_moved'),
                                       2 ** data['part_power'])
        self.part_power = data['part_power']
        self.replicas = data['replicas']
        self.partition_count = 2 ** self.part_power
        self._devices = {dev['id']: dev for dev in data['devices']}
        self._rows = data['assignment']
        self.min_part_hours = min_part_hours
        self._last_moved = last_moved

    @property
    def devices(self):
        """Copies of the device dicts, by id."""
        return [dict(dev) for _id, dev in sorted(self._devices.items())]

    @property
    def assignment(self):
        """Device ids per replica per partition, or None before rebalance."""
        return None if self._rows is None else [list(r) for r in self._rows]

    @property
    def last_moved(self):
        """Epoch seconds of each partition's last move (0: never), or
        None when no partition has moved since the first placement."""
        return None if self._last_moved is None else list(self._last_moved)

    def to_dict(self):
        """The ring file contents as a JSON-able dict."""
        return {'format': ring.FORMAT, 'version': ring.VERSION,
                'part_power': self.part_power, 'replicas': self.replicas,
                'min_part_hours': self.min_part_hours,
                'devices': self.devices, 'assignment': self.assignment,
                'last_moved': self.last_moved}

    def set_min_part_hours(self, hours):
        """Change how long a moved partition is held in place."""
        self.min_part_hours = check_min_part_hours(hours)

    def pretend_min_part_hours_passed(self):
        """Forget every partition's last move (as Swift's command does).

        For an operator who knows replication has caught up, or a test.
        """
        self._last_moved = None

    def held_partitions(self, now=None):
        """Partitions moved less than ``min_part_hours`` before ``now``,
        with the epoch second at which each may move again."""
        if self._last_moved is None or not self.min_part_hours:
            return {}
        now = time.time() if now is None else now
        hold = self.min_part_hours * 3600
        return {part: moved + hold
                for part, moved in enumerate(self._last_moved)
                if moved and now < moved + hold}

    def save(self, path):
        """Write the ring file atomically (tmp file, fsync, rename)."""
        _write_atomic(path, _dumps(self.to_dict()))

    def add_device(self, node, ip, port, device, weight, *, dev_id=None,
                   region=0, zone=0):
        """Add a device; it gets partitions at the next rebalance."""
        ring.check_weight(weight, allow_zero=False)
        if dev_id is None:
            dev_id = max(self._devices, default=-1) + 1
        new = {'id': dev_id, 'region': region, 'zone': zone, 'node': node,
               'ip': ip, 'port': port, 'device': device, 'weight': weight,
               'removed': False}
        devices = ring.validate_devices(list(self._devices.values()) + [new])
        self._devices = {dev['id']: dev for dev in devices}
        return dict(self._devices[dev_id])

    def remove_device(self, dev_id):
        """Remove a device, or mark it removed if it holds partitions.

        A marked device stays a primary until the next rebalance moves
        its replicas away and drops it; until then the ring in use does
        not change.
        """
        dev = self._device(dev_id)
        if dev['removed']:
            raise exceptions.RingError(
                'device %d is already marked for removal' % dev_id)
        if self.part_counts()[dev_id]:
            dev['removed'] = True
        else:
            del self._devices[dev_id]
        return dict(dev)

    def set_weight(self, dev_id, weight):
        """Change a device's weight; 0 drains it at the next rebalance."""
        dev = self._device(dev_id)
        if dev['removed']:
            raise exceptions.RingError(
                'device %d is marked for removal' % dev_id)
        dev['weight'] = ring.check_weight(weight)
        return dict(dev)

    def _device(self, dev_id):
        try:
            return self._devices[dev_id]
        except (KeyError, TypeError):
            raise exceptions.RingError(
                'no device with id %r' % (dev_id,)) from None

    def rebalance(self, seed=0, now=None):
        """Assign partitions to devices; see the class docstring.

        Raises RingError (and changes nothing) when there are fewer
        nodes with weighted devices than replicas. The same ring, seed
        and ``now`` (epoch seconds, default the clock: it decides what
        ``min_part_hours`` holds) always give the same result.
        """
        now = int(time.time() if now is None else now)
        eligible = [dev for dev in self._devices.values()
                    if dev['weight'] > 0 and not dev['removed']]
        nodes = len({dev['node'] for dev in eligible})
        if self.replicas > nodes:
            raise exceptions.RingError('replicas (%d) > nodes (%d)' % (
                self.replicas, nodes))
        old = self._rows
        held = self.held_partitions(now)
        targets = _targets(eligible, self.partition_count, self.replicas)
        plan = _Rebalance(self._devices, targets, old, seed, frozen=held,
                          one_per_part=self.min_part_hours > 0)
        self._rows = plan.run(self.partition_count, self.replicas)
        self._devices = {dev_id: dev for dev_id, dev in self._devices.items()
                         if not dev['removed']}
        moved = 0
        if old is not None:
            last_moved = self._last_moved or [0] * self.partition_count
            for part, (old_col, col) in enumerate(zip(
                    zip(*old, strict=True), zip(*self._rows, strict=True),
                    strict=True)):
                changed = sum(a != b for a, b in zip(old_col, col,
                                                     strict=True))
                if changed:
                    moved += changed
                    last_moved[part] = now
            if moved:
                self._last_moved = last_moved
        held_back, free_at = plan.held_back(
            held, now + self.min_part_hours * 3600)
        return RebalanceResult(moved=moved, balance=self.balance(),
                               undispersed=self.undispersed(),
                               held_back=held_back,
                               wait=max(free_at - now, 0) if held_back
                               else 0.0)

    def part_counts(self):
        """Partition-replicas held per device id (0 for every device)."""
        counts = dict.fromkeys(self._devices, 0)
        for row in self._rows or ():
            for dev_id in row:
                counts[dev_id] += 1
        return counts

    def ideal_parts(self):
        """Weight-proportional partition-replicas per device id."""
        weights = {dev_id: 0.0 if dev['removed'] else dev['weight']
                   for dev_id, dev in self._devices.items()}
        total = sum(weights.values())
        share = self.partition_count * self.replicas / total if total else 0
        return {dev_id: weight * share for dev_id, weight in weights.items()}

    def balance(self):
        """Largest % deviation of a device from its ideal (0 if unbuilt)."""
        if self._rows is None:
            return 0.0
        worst = 0.0
        counts = self.part_counts()
        for dev_id, ideal in self.ideal_parts().items():
            if ideal:
                worst = max(worst,
                            abs(counts[dev_id] - ideal) * 100.0 / ideal)
            elif counts[dev_id]:
                return MAX_BALANCE
        return min(worst, MAX_BALANCE)

    def device_balance(self):
        """Signed % deviation of each device from its ideal, by id."""
        counts = self.part_counts()
        result = {}
        for dev_id, ideal in self.ideal_parts().items():
            if ideal:
                result[dev_id] = min(max(
                    (counts[dev_id] - ideal) * 100.0 / ideal,
                    -MAX_BALANCE), MAX_BALANCE)
            else:
                result[dev_id] = MAX_BALANCE if counts[dev_id] else 0.0
        return result

    def tiers(self):
        """How the replicas of each partition spread over each tier.

        A list of ``{'tier': 'region'|'zone'|'node', 'name': ...,
        'replicas': partition-replicas in it, 'max': most replicas of
        one partition in it, 'histogram': [partitions with 0, 1, ...
        replicas in it]}``, regions first, then zones, then nodes.
        Empty before the first rebalance. Like the tier table of
        ``swift-ring-builder FILE dispersion``.
        """
        if self._rows is None:
            return []
        keys = {dev_id: (('region', str(dev['region'])),
                         ('zone', '%d/%d' % (dev['region'], dev['zone'])),
                         ('node', dev['node']))
                for dev_id, dev in self._devices.items()}
        histograms = collections.defaultdict(
            lambda: [0] * (self.replicas + 1))
        for dev_ids in zip(*self._rows, strict=True):
            counts = collections.Counter(
                key for dev_id in dev_ids for key in keys[dev_id])
            for key, count in counts.items():
                histograms[key][count] += 1
        report = []
        order = {'region': 0, 'zone': 1, 'node': 2}
        for key in sorted(histograms, key=lambda k: (order[k[0]], k[1])):
            histogram = histograms[key]
            histogram[0] = self.partition_count - sum(histogram[1:])
            report.append({
                'tier': key[0], 'name': key[1],
                'replicas': sum(n * parts
                                for n, parts in enumerate(histogram)),
                'max': max(n for n, parts in enumerate(histogram)
                           if parts),
                'histogram': histogram})
        return report

    def undispersed(self):
        """Partitions whose replicas share a zone that need not."""
        if self._rows is None:
            return 0
        zone_of = {dev_id: (dev['region'], dev['zone'])
                   for dev_id, dev in self._devices.items()}
        zones = {zone_of[dev['id']] for dev in self._devices.values()
                 if dev['weight'] > 0 and not dev['removed']}
        wanted = min(self.replicas, len(zones))
        return sum(len({zone_of[dev_id] for dev_id in dev_ids}) < wanted
                   for dev_ids in zip(*self._rows, strict=True))


def check_min_part_hours(value):
    """``value`` if it is a valid min_part_hours, else RingError."""
    if (type(value) is not int or not
            0 <= value <= MAX_MIN_PART_HOURS):
        raise exceptions.RingError(
            'min_part_hours must be an integer 0..%d, got %s' % (
                MAX_MIN_PART_HOURS, ring._brief(value)))
    return value


def _check_last_moved(value, part_count):
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != part_count
            or not all(type(when) is int and when >= 0 for when in value)):
        raise exceptions.RingError(
            'last_moved must be a list of %d integers >= 0' % part_count)
    return list(value)


def _targets(eligible, part_count, replicas):
    """Integer partition-replica targets per eligible device id.

    Weight-proportional node shares capped at one replica of every
    partition, then rounded down the region/zone/node/device tree.
    """
    node_weights = collections.Counter()
    for dev in eligible:
        node_weights[dev['node']] += dev['weight']
    node_shares = _water_fill(node_weights, part_count * replicas,
                              part_count)
    shares = {dev['id']: node_shares[dev['node']] * dev['weight']
              / node_weights[dev['node']] for dev in eligible}
    tiers = (lambda d: d['region'], lambda d: d['zone'],
             lambda d: d['node'], lambda d: d['id'])
    return _apportion_tree(part_count * replicas, eligible, shares, tiers)


def _water_fill(weights, total, cap):
    """Split ``total`` by weight with no key above ``cap``.

    Keys whose share would pass the cap get the cap; the rest is split
    again among the others, until nothing passes it. The caller makes
    sure ``cap * len(weights) >= total``.
    """
    shares, free, remaining = {}, dict(weights), total
    while free:
        weight_sum = sum(free.values())
        capped = [key for key, weight in free.items()
                  if remaining * weight / weight_sum > cap]
        if not capped:
            shares.update((key, remaining * weight / weight_sum)
                          for key, weight in free.items())
            break
        for key in capped:
            shares[key] = cap
            remaining -= cap
            del free[key]
    return shares


def _apportion(total, shares):
    """Round float shares to integers summing to ``total``.

    Largest remainder: everyone gets the floor of their share, the
    units left over go to the largest fractions (ties by key, so the
    result is deterministic). No key gets more than its share rounded
    up, so a capped share stays within its cap.
    """
    ints = {key: math.floor(share) for key, share in shares.items()}
    by_fraction = sorted(shares, key=lambda k: (ints[k] - shares[k], k))
    for key in by_fraction[:max(total - sum(ints.values()), 0)]:
        ints[key] += 1
    return ints


def _apportion_tree(total, devices, shares, tiers):
    """Apportion ``total`` level by level down ``tiers``.

    Rounding per level (rather than per device) keeps every region's,
    zone's and node's total within one of its exact share, which is
    what lets each partition find a replica slot in each zone.
    """
    groups = collections.defaultdict(list)
    for dev in devices:
        groups[tiers[0](dev)].append(dev)
    group_shares = {key: sum(shares[dev['id']] for dev in members)
                    for key, members in groups.items()}
    ints = _apportion(total, group_shares)
    if len(tiers) == 1:
        return ints
    result = {}
    for key, members in groups.items():
        result.update(_apportion_tree(ints[key], members, shares, tiers[1:]))
    return result


class _Rebalance:
    """One rebalance: the keep, place and fix steps and their state.

    ``want`` is each eligible device's target minus what it holds so
    far; ``rows`` is the new assignment being built (None = unplaced).
    """

    def __init__(self, devices, targets, old, seed, frozen=(),
                 one_per_part=False):
        self.tiers = {dev_id: (dev['region'], (dev['region'], dev['zone']),
                               dev['node'])
                      for dev_id, dev in devices.items()}
        self.targets = targets
        self.want = dict(targets)
        self.old = old
        self.seed = seed
        # Partitions min_part_hours holds, and whether a partition may
        # have only one replica moved by choice in one rebalance.
        self.frozen = frozen
        self.one_per_part = one_per_part

    def run(self, part_count, replicas):
        self.rows = [[None] * part_count for _ in range(replicas)]
        self.order = list(range(part_count))
        self.rng = random.Random(self.seed)
        # A shuffled walk spreads each device's kept and shed partitions
        # over the whole partition space instead of its low end.
        self.rng.shuffle(self.order)
        if self.old is not None:
            self._keep()
        self._place()
        self._fix_balance()
        self._improve_spread()
        return self.rows

    def _holders(self, part, skip=None):
        return [row[part] for index, row in enumerate(self.rows)
                if row[part] is not None and index != skip]

    def _node_free(self, part, dev_id, skip=None):
        node = self.tiers[dev_id][2]
        return all(self.tiers[other][2] != node
                   for other in self._holders(part, skip))

    def _assign(self, part, replica, dev_id):
        self._unassign(part, replica)
        self.rows[replica][part] = dev_id
        self.want[dev_id] -= 1

    def _unassign(self, part, replica):
        previous = self.rows[replica][part]
        if previous is not None:
            self.want[previous] += 1
            self.rows[replica][part] = None

    def _keep(self):
        """Keep every old placement, then shed each device's surplus.

        The old assignment has each partition on distinct nodes, so only
        replicas on devices that are gone, drained or above target need
        a new home. Which of a device's replicas it sheds decides how
        much else moves, so it prefers, in this order, replicas of
        partitions that lose no other replica in this rebalance (moving
        two copies of a partition at once leaves one serving it),
        partitions some device below target can take (no node clash, so
        no second move to make room), and partitions where the replica
        shares its zone with another copy (moving it improves spread).
        """
        shed_parts = set()
        by_device = collections.defaultdict(list)
        for part in self.order:
            for replica, old_row in enumerate(self.old):
                dev_id = old_row[part]
                if dev_id in self.want:
                    self._assign(part, replica, dev_id)
                    by_device[dev_id].append((part, replica))
                else:
                    shed_parts.add(part)
        wanting = {self.tiers[d][2] for d, want in self.want.items()
                   if want > 0}
        for dev_id in sorted(self.want, key=lambda d: (self.want[d], d)):
            if self.want[dev_id] >= 0:
                break
            free = [slot for slot in by_device[dev_id]
                    if not self._held(slot[0], shed_parts)]
            slots = sorted(free, key=lambda slot: (
                slot[0] in shed_parts,
                not self._takers(slot[0], slot[1], wanting),
                not self._doubled(slot[0], slot[1])))
            for part, replica in slots[:-self.want[dev_id]]:
                self._unassign(part, replica)
                shed_parts.add(part)

    def _held(self, part, moving):
        """May no (more) replica of ``part`` move by choice?

        ``moving`` holds the partitions with a replica moving already.
        """
        return part in self.frozen or (self.one_per_part
                                       and part in moving)

    def _movable(self, part, replica):
        """Can this replica move now (in the fix and spread steps)?"""
        if self.old is None or self._moved(part, replica):
            return True
        if part in self.frozen:
            return False
        return not (self.one_per_part and any(
            self._moved(part, other) for other in range(len(self.rows))
            if other != replica))

    def held_back(self, frozen, later):
        """``(count, epoch second)``: replicas left on devices above
        target because their partition is held, and when the first of
        them may move (``later`` for a partition moved now)."""
        count, free_at = 0, None
        over = {dev_id: -want for dev_id, want in self.want.items()
                if want < 0}
        if not over or self.old is None:
            return 0, 0
        for part in self.order:
            for replica, row in enumerate(self.rows):
                dev_id = row[part]
                if (over.get(dev_id, 0) > 0
                        and not self._movable(part, replica)):
                    over[dev_id] -= 1
                    count += 1
                    when = frozen.get(part, later)
                    free_at = when if free_at is None else min(free_at,
                                                               when)
        return count, free_at or 0

    def _takers(self, part, replica, nodes):
        """Could a device on one of ``nodes`` take this replica?"""
        used = {self.tiers[d][2] for d in self._holders(part, replica)}
        return not nodes <= used

    def _doubled(self, part, replica):
        zone = self.tiers[self.rows[replica][part]][1]
        return any(self.tiers[d][1] == zone
                   for d in self._holders(part, replica))

    def _place(self):
        for part in self.order:
            for replica, row in enumerate(self.rows):
                if row[part] is None:
                    self._assign(part, replica, self._best_device(part))

    def _best_device(self, part):
        """Pick a device for one more replica of ``part``.

        Among devices on nodes ``part`` does not use, those still below
        target come first, then those in the least used region, then
        zone. Within that group the pick is random, weighted by want:
        a fixed order would pair the same nodes in partition after
        partition, and losing one node would then load only a few peers.
        """
        used = [self.tiers[d] for d in self._holders(part)]
        regions = [tiers[0] for tiers in used]
        zones = [tiers[1] for tiers in used]
        nodes = {tiers[2] for tiers in used}
        key, group = None, []
        for dev_id, want in self.want.items():
            region, zone, node = self.tiers[dev_id]
            if node in nodes:
                continue
            dev_key = (want <= 0, regions.count(region), zones.count(zone))
            if key is None or dev_key < key:
                key, group = dev_key, [dev_id]
            elif dev_key == key:
                group.append(dev_id)
        if key[0]:
            # Everyone has enough: overfill the least overfull.
            return max(group, key=lambda d: (
                self.want[d] / max(self.targets[d], 1), -d))
        return self.rng.choices(
            group, weights=[self.want[d] for d in group])[0]

    def _fix_balance(self):
        """Move replicas from devices above target to those below.

        First only moves that keep the partition as spread over regions
        and zones; then, for devices still short, any move: weights are
        capacity, so balance wins over dispersion when both cannot hold.
        """
        if not any(want > 0 for want in self.want.values()):
            return
        slots = [(part, replica) for part in self.order
                 for replica in range(len(self.rows))]
        if self.old is not None:
            # Replicas that moved anyway can move again at no cost.
            slots.sort(key=lambda s: self.rows[s[1]][s[0]]
                       == self.old[s[1]][s[0]])
        for keep_spread in (True, False):
            under = sorted((d for d, want in self.want.items() if want > 0),
                           key=lambda d: (-self.want[d], d))
            for dev_id in under:
                for part, replica in slots:
                    if self.want[dev_id] <= 0:
                        break
                    if self._can_move(part, replica, dev_id, keep_spread):
                        self._assign(part, replica, dev_id)

    def _can_move(self, part, replica, dev_id, keep_spread):
        current = self.rows[replica][part]
        if self.want[current] >= 0 or not self._movable(part, replica):
            return False
        if not self._node_free(
                part, dev_id, skip=replica):
            return False
        others = self._holders(part, skip=replica)
        return not keep_spread or (self._spread(others + [dev_id])
                                   >= self._spread(others + [current]))

    def _improve_spread(self):
        """Swap replicas between partitions to undo zone doubling.

        Greedy placement can end with the last partitions finding want
        left only in zones they already use. Swapping two replicas
        between partitions keeps every device's count, so balance holds.
        Only replicas that moved in this rebalance take part (no extra
        movement), and each doubled replica tries a bounded number of
        random partners (a doubling forced by zone weights has none, and
        must not cost a scan of the whole ring).
        """
        part_count = len(self.order)
        zones = collections.Counter()
        for dev_id, target in self.targets.items():
            zones[self.tiers[dev_id][1]] += target
        if max(zones.values()) > part_count:
            # A zone with more replicas than partitions must double up
            # somewhere; swaps cannot cure it, so do not pay for trying.
            return
        wanted = min(len(self.rows), len(+zones))
        movable = [(part, replica) for part in self.order
                   for replica in range(len(self.rows))
                   if self._moved(part, replica)]
        for part in self.order:
            if self._spread(self._holders(part))[1] >= wanted:
                continue
            for replica in range(len(self.rows)):
                if self._moved(part, replica) and self._doubled(part,
                                                                replica):
                    self._swap_for_spread(part, replica, movable)

    def _swap_for_spread(self, part, replica, movable):
        for other, other_replica in self.rng.sample(
                movable, min(SPREAD_TRIES, len(movable))):
            if other == part:
                continue
            mine = self.rows[replica][part]
            theirs = self.rows[other_replica][other]
            if any(self.tiers[theirs][1] == self.tiers[d][1]
                   for d in self._holders(part)):
                continue
            before = (self._spread(self._holders(part)),
                      self._spread(self._holders(other)))
            if not (self._node_free(part, theirs, skip=replica)
                    and self._node_free(other, mine, skip=other_replica)):
                continue
            self.rows[replica][part] = theirs
            self.rows[other_replica][other] = mine
            if (self._spread(self._holders(part)) > before[0]
                    and self._spread(self._holders(other)) >= before[1]):
                return
            self.rows[replica][part] = mine
            self.rows[other_replica][other] = theirs

    def _moved(self, part, replica):
        return (self.old is None
                or self.rows[replica][part] != self.old[replica][part])

    def _spread(self, dev_ids):
        return (len({self.tiers[d][0] for d in dev_ids}),
                len({self.tiers[d][1] for d in dev_ids}))


def _dumps(data):
    """JSON with one line per device and per replica row.

    Readable in an editor and in diffs, without one line per partition.
    """
    head = {key: data[key] for key in
            ('format', 'version', 'part_power', 'replicas',
             'min_part_hours') if key in data}
    lines = ['{']
    lines += ['  %s: %s,' % (json.dumps(k), json.dumps(v))
              for k, v in head.items()]
    lines.append('  "devices": [')
    lines.append(',\n'.join('    ' + json.dumps(dev)
                            for dev in data['devices']))
    lines.append('  ],')
    if data['assignment'] is None:
        lines.append('  "assignment": null')
    else:
        lines.append('  "assignment": [')
        lines.append(',\n'.join(
            '    ' + json.dumps(row, separators=(',', ':'))
            for row in data['assignment']))
        lines.append('  ]')
    if 'last_moved' in data:
        lines[-1] += ','
        lines.append('  "last_moved": %s' % json.dumps(
            data['last_moved'], separators=(',', ':')))
    lines.append('}')
    return '\n'.join(line for line in lines if line) + '\n'


def _write_atomic(path, text):
    try:
        fsutil.write_file_atomic(path, text.encode('utf-8'))
    except OSError as err:
        raise exceptions.RingError('cannot write ring file %s: %s' % (
            path, err.strerror or err)) from err


