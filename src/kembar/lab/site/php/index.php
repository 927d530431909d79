<?php
// kembar lab: the demo shop's PHP variant (the LAMP stack).  Orders go into MariaDB, whose
// data directory is on the replicated disk, as is this file.  Routes as the Python shop's:
// GET / (catalogue and form), POST /order (customer, product, quantity: 201 + JSON
// {"id", "node"} when the client accepts JSON, else 303 to /orders), GET /orders,
// GET /orders.json, GET /health ("ok NODE" once the database answers).  Every reply says
// which node served it (X-Served-By).  The database's credentials: /srv/data/shop.ini
// (outside the web root).

$node = gethostname();
header("X-Served-By: $node");
header("Cache-Control: no-store");

const PRODUCTS = [1 => "Replicated disk", 2 => "Virtual IP", 3 => "Heartbeat link",
                  4 => "Fencing switch", 5 => "Spare node"];

function wants_json(): bool {
    return str_contains($_SERVER["HTTP_ACCEPT"] ?? "", "application/json");
}

function reply(int $status, string $text, ?array $json = null): never {
    global $node;
    http_response_code($status);
    if ($json !== null && wants_json()) {
        header("Content-Type: application/json");
        echo json_encode($json + ["node" => $node]);
    } else {
        header("Content-Type: text/html; charset=utf-8");
        echo "<!doctype html><title>kembar shop</title><h1>kembar shop (PHP, MariaDB)</h1>"
            . $text . "<p><small>served by " . htmlspecialchars($node) . "</small></p>";
    }
    exit;
}

function db(): mysqli {
    $ini = parse_ini_file("/srv/data/shop.ini");
    if ($ini === false) {
        reply(503, "<p>shop configuration missing</p>", ["error" => "shop configuration missing"]);
    }
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    try {
        return new mysqli("localhost", $ini["user"], $ini["password"], $ini["database"], 0,
                          $ini["socket"]);
    } catch (mysqli_sql_exception $e) {
        reply(503, "<p>database unavailable</p>", ["error" => "database unavailable: " . $e->getMessage()]);
    }
}

$path = parse_url($_SERVER["REQUEST_URI"] ?? "/", PHP_URL_PATH);
$method = $_SERVER["REQUEST_METHOD"] ?? "GET";

try {
    if ($path === "/health" && $method === "GET") {
        db()->query("SELECT count(*) FROM orders")->fetch_row();
        header("Content-Type: text/plain; charset=utf-8");
        echo "ok $node";
        exit;
    }
    if ($path === "/order" && $method === "POST") {
        $customer = trim($_POST["customer"] ?? "");
        $product = filter_var($_POST["product"] ?? "", FILTER_VALIDATE_INT);
        $quantity = filter_var($_POST["quantity"] ?? "1", FILTER_VALIDATE_INT);
        if ($customer === "" || strlen($customer) > 100) {
            reply(400, "<p>a customer name of 1 to 100 characters, please</p>", ["error" => "bad customer"]);
        }
        if ($product === false || !isset(PRODUCTS[$product])) {
            reply(400, "<p>no such product</p>", ["error" => "no such product"]);
        }
        if ($quantity === false || $quantity < 1 || $quantity > 100) {
            reply(400, "<p>a quantity from 1 to 100, please</p>", ["error" => "bad quantity"]);
        }
        $db = db();
        $st = $db->prepare("INSERT INTO orders (product_id, quantity, customer, node) VALUES (?, ?, ?, ?)");
        $st->bind_param("iiss", $product, $quantity, $customer, $node);
        $st->execute();  // autocommit: InnoDB has flushed its log when this returns
        if (wants_json()) {
            reply(201, "", ["id" => $db->insert_id]);
        }
        header("Location: /orders", true, 303);
        exit;
    }
    if ($path === "/orders.json" && $method === "GET") {
        $rows = db()->query("SELECT id, product_id, quantity, customer, created, node FROM orders ORDER BY id")
                    ->fetch_all(MYSQLI_ASSOC);
        foreach ($rows as &$r) {
            foreach (["id", "product_id", "quantity"] as $k) { $r[$k] = (int)$r[$k]; }
        }
        header("Content-Type: application/json");
        echo json_encode(["node" => $node, "count" => count($rows), "orders" => $rows]);
        exit;
    }
    if ($path === "/orders" && $method === "GET") {
        $rows = db()->query("SELECT id, product_id, quantity, customer, node FROM orders ORDER BY id DESC LIMIT 50")
                    ->fetch_all(MYSQLI_ASSOC);
        $html = "<table><tr><th>#</th><th>product</th><th>qty</th><th>customer</th><th>node</th></tr>";
        foreach ($rows as $r) {
            $html .= "<tr><td>" . (int)$r["id"] . "</td><td>" . htmlspecialchars(PRODUCTS[(int)$r["product_id"]] ?? "?")
                . "</td><td>" . (int)$r["quantity"] . "</td><td>" . htmlspecialchars($r["customer"])
                . "</td><td>" . htmlspecialchars($r["node"]) . "</td></tr>";
        }
        reply(200, $html . "</table><p><a href='/'>Back to the catalogue</a></p>");
    }
    if ($path === "/" && $method === "GET") {
        $opts = "";
        foreach (PRODUCTS as $id => $name) {
            $opts .= "<option value='$id'>" . htmlspecialchars($name) . "</option>";
        }
        reply(200, "<form method='post' action='/order'><input name='customer' placeholder='your name'>"
            . "<select name='product'>$opts</select><input name='quantity' value='1' size='3'>"
            . "<button>Order</button></form><p><a href='/orders'>Orders</a></p>");
    }
    reply(404, "<p>no such page</p>", ["error" => "no such page"]);
} catch (mysqli_sql_exception $e) {
    reply(503, "<p>database unavailable</p>", ["error" => "database unavailable: " . $e->getMessage()]);
}
