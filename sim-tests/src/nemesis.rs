//! The nemesis: faults chosen from the seed and applied to the simulation between steps.
//!
//! During the safety phase it applies one fault at a time for a random duration, with a random
//! pause between faults: a symmetric partition (a random minority cut off from the rest),
//! isolating the current leader, a one-way partition (the leader or a random minority on one
//! side, the other members on the other, and only one direction cut), crashing a member (the leader or another) and restarting it
//! later with its unsynced writes lost, raising network latency, pausing a member (the leader
//! or another), transferring leadership, compacting under load, or replacing a member (the
//! leader or another: it crashes, its disk is wiped, and the operator removes its member, adds
//! a learner in its place — which the nemesis starts on the empty disk — and promotes it). At
//! `heal_at` it undoes whatever is active — every member runs, every link delivers, latency is
//! back to normal — and applies nothing more, except starting a replacement member the
//! operator asks for (a replacement outlives the faults).
//!
//! A pause holds every link of the member, to members and clients alike: from outside it is a
//! stopped process, whose peers and clients get its messages late, all at once, when it
//! resumes (turmoil cannot stop one host's clock, so its timers keep running). Leader transfers
//! and compactions are requests, carried out by the [`operator`](crate::operator).
//!
//! Partitions hold messages rather than drop them: turmoil's TCP does not retransmit, so a
//! dropped segment would stall a connection forever, which real TCP (retransmitting until the
//! network heals) never does. Held messages model exactly that retransmission.
//!
//! One-way partitions hold one direction only. turmoil 0.7 holds a link both ways (and its
//! one-way partition drops, with the stall above), so the direction is cut at the sockets by
//! [`net::cut_oneway`](crate::net::cut_oneway): every connection from a member of the cut
//! side to one of the other side stops taking bytes to write — what its sender would do
//! retransmitting into the dead path — and delivers them all when the cut heals, while bytes
//! the other way keep arriving. This is an approximation of real TCP in three ways, each
//! noted: connecting succeeds in both directions (real TCP's handshake would stall, as the
//! SYN or SYN-ACK is lost); the far side keeps sending without the acknowledgements it would
//! stall on once its send window filled (so a one-way cut stays one-way for as long as it
//! lasts, which is the fault being tested, not TCP's eventual two-way stall); and a
//! connection the cut side drops (HTTP/2 keepalive gives up) still tells the far side it
//! ended, as its FIN is not held.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::cluster::SimCluster;
use crate::operator::{AdminCommand, AdminQueue, REPLACEMENT_LASTS};

/// How a fault is undone.
#[derive(Debug)]
enum Undo {
    Release {
        a: Vec<usize>,
        b: Vec<usize>,
    },
    Restart(usize),
    Latency,
    /// A one-way partition: end every cut.
    HealOneway,
    Resume(String),
    /// A replacement, which the operator and [`Nemesis::tick`] finish: nothing to undo.
    Replaced,
    /// A request: nothing to undo.
    Nothing,
}

/// The faults of one simulation.
pub struct Nemesis {
    rng: StdRng,
    start_at: Duration,
    heal_at: Duration,
    next_at: Duration,
    active: Option<(Undo, Duration)>,
    healed: bool,
    base_latency: Duration,
    /// Every host of the simulation, members and clients.
    hosts: Vec<String>,
    admin: AdminQueue,
    /// What was done and when, for the trace and for failure reports.
    pub log: Vec<String>,
}

impl Nemesis {
    pub fn new(
        seed: u64,
        start_at: Duration,
        heal_at: Duration,
        base_latency: Duration,
        hosts: Vec<String>,
        admin: AdminQueue,
    ) -> Self {
        // A simulation that broke on this thread may have left a cut behind.
        crate::net::heal_oneway();
        Self {
            rng: StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973),
            start_at,
            heal_at,
            next_at: start_at,
            active: None,
            healed: false,
            base_latency,
            hosts,
            admin,
            log: Vec::new(),
        }
    }

    /// Applies or undoes faults due at simulated time `now`.
    pub fn tick(&mut self, now: Duration, sim: &mut turmoil::Sim<'_>, cluster: &SimCluster) {
        if let Some((member, identity)) = self.admin.take_joiner() {
            self.log.push(format!(
                "{}ms start {member} as member {:x}",
                now.as_millis(),
                identity.member_id
            ));
            *cluster.disks[member].joining.lock() = Some(identity);
            cluster.restart(sim, member);
        }
        if self.healed || now < self.start_at {
            return;
        }
        if now >= self.heal_at {
            if let Some((undo, _)) = self.active.take() {
                self.undo(now, undo, sim, cluster);
            }
            self.log.push(format!("{}ms heal", now.as_millis()));
            self.healed = true;
            return;
        }
        match self.active.take() {
            Some((Undo::Replaced, _)) if !self.admin.replacing() => {
                self.log.push(format!("{}ms replaced", now.as_millis()));
                let pause = self.rng.gen_range(200..2_000);
                self.next_at = now + Duration::from_millis(pause);
            }
            Some((undo, until)) if now >= until => {
                self.undo(now, undo, sim, cluster);
                let pause = self.rng.gen_range(200..2_000);
                self.next_at = now + Duration::from_millis(pause);
            }
            Some(active) => self.active = Some(active),
            None if now >= self.next_at => {
                let undo = self.apply(now, sim, cluster);
                // Under the peers' 5 s call deadline, so no peer call is cancelled (see
                // `client` on why cancelled calls break replay).
                let lasting = match undo {
                    Undo::Replaced => REPLACEMENT_LASTS,
                    _ => Duration::from_millis(self.rng.gen_range(500..4_000)),
                };
                self.active = Some((undo, now + lasting));
            }
            None => {}
        }
    }

    fn apply(&mut self, now: Duration, sim: &mut turmoil::Sim<'_>, cluster: &SimCluster) -> Undo {
        let size = cluster.size();
        let members: Vec<usize> = (0..size).collect();
        let at = now.as_millis();
        match self.rng.gen_range(0..10) {
            0 => {
                let minority = self.rng.gen_range(1..=(size - 1) / 2);
                let mut shuffled = members.clone();
                shuffled.shuffle(&mut self.rng);
                let (a, b) = shuffled.split_at(minority);
                self.log.push(format!("{at}ms partition {a:?} | {b:?}"));
                self.hold(sim, cluster, a, b);
                Undo::Release {
                    a: a.to_vec(),
                    b: b.to_vec(),
                }
            }
            1 => {
                let leader = cluster
                    .leader()
                    .unwrap_or_else(|| self.rng.gen_range(0..size));
                let others: Vec<usize> = members.into_iter().filter(|m| *m != leader).collect();
                self.log.push(format!("{at}ms isolate leader {leader}"));
                self.hold(sim, cluster, &[leader], &others);
                Undo::Release {
                    a: vec![leader],
                    b: others,
                }
            }
            2 | 3 => {
                let victim = match cluster.leader() {
                    Some(leader) if self.rng.gen_bool(0.5) => leader,
                    _ => self.rng.gen_range(0..size),
                };
                self.log.push(format!("{at}ms crash {victim}"));
                cluster.crash(sim, victim, &self.hosts);
                Undo::Restart(victim)
            }
            4 => {
                let latency = Duration::from_millis(self.rng.gen_range(50..400));
                self.log
                    .push(format!("{at}ms latency up to {}ms", latency.as_millis()));
                sim.set_max_message_latency(latency);
                Undo::Latency
            }
            5 => {
                let victim = match cluster.leader() {
                    Some(leader) if self.rng.gen_bool(0.5) => leader,
                    _ => self.rng.gen_range(0..size),
                };
                let name = cluster.names[victim].clone();
                self.log.push(format!("{at}ms pause {victim}"));
                for other in self.hosts.iter().filter(|host| **host != name) {
                    sim.hold(name.as_str(), other.as_str());
                }
                Undo::Resume(name)
            }
            6 => {
                let target = self.rng.gen_range(0..size);
                let target_id = cluster.disks[target]
                    .handle
                    .lock()
                    .as_ref()
                    .map(|handle| handle.member_id());
                match (cluster.leader(), target_id) {
                    (Some(via), Some(target_id)) if via != target => {
                        self.log
                            .push(format!("{at}ms transfer leadership {via} -> {target}"));
                        self.admin.push(AdminCommand::MoveLeader {
                            via,
                            target,
                            target_id,
                        });
                    }
                    _ => self
                        .log
                        .push(format!("{at}ms no leadership transfer to {target}")),
                }
                Undo::Nothing
            }
            8 => {
                let one_side = match cluster.leader() {
                    Some(leader) if self.rng.gen_bool(0.5) => vec![leader],
                    _ => {
                        let minority = self.rng.gen_range(1..=(size - 1) / 2);
                        let mut shuffled = members.clone();
                        shuffled.shuffle(&mut self.rng);
                        shuffled.truncate(minority);
                        shuffled
                    }
                };
                let other_side: Vec<usize> = members
                    .into_iter()
                    .filter(|member| !one_side.contains(member))
                    .collect();
                let (from, to) = if self.rng.gen_bool(0.5) {
                    (one_side, other_side)
                } else {
                    (other_side, one_side)
                };
                self.log
                    .push(format!("{at}ms one-way cut {from:?} -> {to:?}"));
                for x in &from {
                    for y in &to {
                        crate::net::cut_oneway(
                            sim.lookup(cluster.names[*x].as_str()),
                            sim.lookup(cluster.names[*y].as_str()),
                        );
                    }
                }
                Undo::HealOneway
            }
            9 => {
                let victim = match cluster.leader() {
                    Some(leader) if self.rng.gen_bool(0.5) => leader,
                    _ => self.rng.gen_range(0..size),
                };
                let old_id = cluster.disks[victim]
                    .handle
                    .lock()
                    .as_ref()
                    .map(|handle| handle.member_id());
                let Some(old_id) = old_id else {
                    self.log
                        .push(format!("{at}ms no replacement of {victim}: not serving"));
                    return Undo::Nothing;
                };
                self.log.push(format!("{at}ms replace {victim}"));
                cluster.crash(sim, victim, &self.hosts);
                cluster.disks[victim].engine.wipe();
                *cluster.disks[victim].joining.lock() = None;
                self.admin.push(AdminCommand::Replace {
                    member: victim,
                    name: cluster.names[victim].clone(),
                    old_id,
                });
                Undo::Replaced
            }
            _ => {
                let via = self.rng.gen_range(0..size);
                let physical = self.rng.gen_bool(0.5);
                self.log.push(format!(
                    "{at}ms compact through {via} (physical {physical})"
                ));
                self.admin.push(AdminCommand::Compact { via, physical });
                Undo::Nothing
            }
        }
    }

    fn hold(&self, sim: &turmoil::Sim<'_>, cluster: &SimCluster, a: &[usize], b: &[usize]) {
        for x in a {
            for y in b {
                sim.hold(cluster.names[*x].as_str(), cluster.names[*y].as_str());
            }
        }
    }

    fn undo(
        &mut self,
        now: Duration,
        undo: Undo,
        sim: &mut turmoil::Sim<'_>,
        cluster: &SimCluster,
    ) {
        let at = now.as_millis();
        match undo {
            Undo::Release { a, b } => {
                for x in &a {
                    for y in &b {
                        sim.release(cluster.names[*x].as_str(), cluster.names[*y].as_str());
                    }
                }
                self.log.push(format!("{at}ms release"));
            }
            Undo::Restart(member) => {
                cluster.restart(sim, member);
                self.log.push(format!("{at}ms restart {member}"));
            }
            Undo::Latency => {
                sim.set_max_message_latency(self.base_latency);
                self.log.push(format!("{at}ms latency back"));
            }
            Undo::HealOneway => {
                crate::net::heal_oneway();
                self.log.push(format!("{at}ms heal one-way cut"));
            }
            Undo::Resume(name) => {
                for other in self.hosts.iter().filter(|host| **host != name) {
                    sim.release(name.as_str(), other.as_str());
                }
                self.log.push(format!("{at}ms resume {name}"));
            }
            Undo::Replaced | Undo::Nothing => {}
        }
    }
}
