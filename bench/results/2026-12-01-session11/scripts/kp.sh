#!/bin/bash
# usage: kp.sh DIR -- suid/sgid kill semantics for an unprivileged writer, truncater, chowner
D=$1; cd $D || exit 1
U="setpriv --reuid 65534 --regid 65534 --clear-groups"
t() { # name mode op
  rm -f k_$1; touch k_$1; chown 65534:65534 k_$1; chmod $2 k_$1
  case $3 in
    write) $U sh -c "echo x >> k_$1" ;;
    trunc) $U truncate -s 0 k_$1 ;;
    otrunc) $U sh -c ": > k_$1" ;;
    rootwrite) sh -c "echo x >> k_$1" ;;
    caps) setcap cap_net_raw+ep k_$1; $U sh -c "echo x >> k_$1"; echo "caps after: $(getcap k_$1)";;
  esac
  echo "$1 $2 $3 -> $(stat -c %a k_$1)"
}
t a 6775 write; t b 6755 write; t c 4755 trunc; t d 6775 otrunc; t e 6775 rootwrite; t f 0775 caps
t g 6775 write2
