// libpcap for the TracePcap target: reading pcap and pcapng, writing pcap.
// Package.swift finds it through pkg-config (libpcap); on Debian/Ubuntu the
// package is libpcap-dev.
#ifndef XENBLK_CPCAP_SHIM_H
#define XENBLK_CPCAP_SHIM_H
#include <pcap/pcap.h>
#endif
