#!/usr/bin/env python3
"""The monitor calls of the third-party PyPI client py3fdfs against a tracker port.

Usage:
    py3fdfs_monitor.py --tracker HOST:PORT --group NAME --storage-ip IP

py3fdfs parses the classic record layouts (105-byte group records, 612-byte storage
records of FastDFS V5.04-V6.10). It lists all groups (91), one group (90) and the
storages of a group (92), and prints one `key=value` line per fact it read, then
`py3fdfs-monitor: ok`. Any exception is printed and the exit code is 1.
"""

import argparse
import sys
import traceback

from fdfs_client.client import Fdfs_client


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tracker", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--storage-ip", required=True)
    args = parser.parse_args()
    host, port = args.tracker.rsplit(":", 1)
    client = Fdfs_client({"host_tuple": (host,), "port": int(port), "timeout": 10, "name": "Tracker Pool"})
    group = args.group.encode()
    try:
        groups = client.list_all_groups()
        print("groups_count=%d" % groups["Groups count"])
        for g in groups["Groups"]:
            print("group=%s count=%d active=%d port=%d" % (
                g.group_name.decode(), g.count, g.active_count, g.storage_port))
        one = client.list_one_group(group)
        print("one_group=%s subdirs=%d" % (one.group_name.decode(), one.subdir_count_per_path))
        servers = client.list_servers(group, args.storage_ip.encode())
        for s in servers["Servers"]:
            print("storage ip=%s status=%d port=%d version=%s" % (
                s.ip_addr.decode(), s.status, s.storage_port, s.version.decode()))
    except Exception:
        traceback.print_exc()
        print("py3fdfs-monitor: failed")
        return 1
    print("py3fdfs-monitor: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
