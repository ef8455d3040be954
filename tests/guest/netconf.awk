# Reads a netplan version 2 network-config (the subset in README.md) and
# prints one line per ethernet:
#   name|macaddress|address,address|gateway4|mtu|dhcp4|nameserver,nameserver|gateway6
# (addresses of both families; the default routes by the family of `via`)
# Runs under busybox awk in the test guest; the guest's /init applies it.

function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t\r]+$/, "", s); return s }
function unq(s) {
    s = trim(s)
    if (s ~ /^".*"$/ || s ~ /^'.*'$/) s = substr(s, 2, length(s) - 2)
    return s
}
function join(cur, v) { v = unq(v); if (v == "") return cur; return cur == "" ? v : cur "," v }
# "[a, b]" or "a" -> "a,b"
function flow_list(v,   n, a, i, out) {
    v = trim(v); sub(/^\[/, "", v); sub(/\]$/, "", v)
    n = split(v, a, ",")
    out = ""
    for (i = 1; i <= n; i++) out = join(out, a[i])
    return out
}
function is_default(t) { t = unq(t); return t == "default" || t == "0.0.0.0/0" || t == "::/0" }
function flush() {
    if (ifname != "")
        print ifname "|" mac "|" addrs "|" gw "|" mtu "|" dhcp "|" dns "|" gw6
    ifname = ""; mac = ""; addrs = ""; gw = ""; mtu = ""; dhcp = ""; dns = ""; gw6 = ""
    ctx = ""; sub_key = ""; prop_ind = -1; rto = ""; rvia = ""
}
# A default route's family is its gateway's: "::/0" or "default" via an
# IPv6 address sets gateway6, else gateway4 (the first of each wins).
function route_done(   v) {
    if (rto == "" || rvia == "" || !is_default(rto)) return
    v = unq(rvia)
    if (v ~ /:/) { if (gw6 == "" && unq(rto) != "0.0.0.0/0") gw6 = v }
    else if (gw == "" && unq(rto) != "::/0") gw = v
}
# Handles "key: value" at depth `deep` (0 = interface property) within ctx.
function keyval(body, deep,   key, val, m) {
    key = body; sub(/:.*/, "", key); key = unq(key)
    val = body; sub(/^[^:]*:/, "", val); val = trim(val)
    if (!deep) {
        ctx = key; sub_key = ""
        if (key == "addresses") { if (val != "") addrs = flow_list(val) }
        else if (key == "gateway4") gw = unq(val)
        else if (key == "gateway6") gw6 = unq(val)
        else if (key == "mtu") mtu = unq(val)
        else if (key == "dhcp4") dhcp = tolower(unq(val))
        else if (key == "match" && val ~ /^\{/) {
            if (match(val, /macaddress[\"']?[ \t]*:[ \t]*[\"']?[0-9A-Fa-f:]+/)) {
                m = substr(val, RSTART, RLENGTH)
                sub(/^macaddress[\"']?[ \t]*:[ \t]*[\"']?/, "", m)
                mac = m
            }
        } else if (key == "nameservers" && val ~ /^\{/) {
            if (match(val, /addresses[ \t]*:[ \t]*\[[^]]*\]/)) {
                m = substr(val, RSTART, RLENGTH); sub(/^addresses[ \t]*:[ \t]*/, "", m)
                dns = flow_list(m)
            }
        }
        return
    }
    sub_key = key
    if (ctx == "match" && key == "macaddress") mac = unq(val)
    else if (ctx == "nameservers" && key == "addresses" && val != "") dns = flow_list(val)
    else if (ctx == "routes" && key == "to") { rto = val; route_done() }
    else if (ctx == "routes" && key == "via") { rvia = val; route_done() }
}
BEGIN { in_eth = 0; ifname = ""; flush() }
{
    line = $0
    sub(/\r$/, "", line)
    sub(/(^|[ \t])#.*$/, "", line)
    if (line ~ /^[ \t]*$/) next
    match(line, /^ */); ind = RLENGTH
    body = trim(line)
    if (in_eth && ind <= eth_ind) { flush(); in_eth = 0 }
    if (!in_eth) {
        if (body ~ /^ethernets:[ \t]*$/) { in_eth = 1; eth_ind = ind; if_ind = -1 }
        next
    }
    if (if_ind < 0 || ind <= if_ind) {
        # a new interface: "name:" (or "name: {}")
        flush()
        if_ind = ind
        n = body; sub(/:.*/, "", n)
        ifname = unq(n)
        next
    }
    if (prop_ind < 0) prop_ind = ind
    if (ind <= prop_ind) { keyval(body, 0); next }
    # deeper: list items or nested keys
    if (body ~ /^-[ \t]/ || body == "-") {
        item = trim(substr(body, 2))
        if (ctx == "addresses") addrs = join(addrs, item)
        else if (ctx == "nameservers" && sub_key == "addresses") dns = join(dns, item)
        else if (ctx == "routes") {
            rto = ""; rvia = ""
            if (item ~ /^\{/) {
                if (match(item, /to[ \t]*:[ \t]*[^,}]+/)) { m = substr(item, RSTART, RLENGTH); sub(/^to[ \t]*:/, "", m); rto = trim(m) }
                if (match(item, /via[ \t]*:[ \t]*[^,}]+/)) { m = substr(item, RSTART, RLENGTH); sub(/^via[ \t]*:/, "", m); rvia = trim(m) }
                route_done()
            } else if (item ~ /:/) keyval(item, 1)
        }
        next
    }
    keyval(body, 1)
}
END { flush() }
