-- Example queries for analysts. They run on SQLite and Postgres alike.

-- SKUs where we are the most expensive today, biggest gap first.
SELECT tenant, project, sku, product_title, our_price, lowest_price, lowest_competitor, price_index
FROM v_market_position
WHERE position = 'highest' AND position_date = CURRENT_DATE
ORDER BY price_index DESC;

-- Scrape health over the last 7 days, worst competitors first.
SELECT competitor, SUM(fetches) AS fetches, SUM(failed) AS failed,
       1.0 * SUM(failed) / SUM(fetches) AS error_rate
FROM v_scrape_health
WHERE observation_date >= CURRENT_DATE - 7   -- SQLite: DATE('now', '-7 days')
GROUP BY competitor
ORDER BY error_rate DESC;

-- Why fetches failed yesterday and today, by error class.
SELECT error_class, COUNT(*) AS failures, MIN(error_message) AS example
FROM v_competitor_observations
WHERE status = 'error'
GROUP BY error_class
ORDER BY failures DESC;

-- Day-over-day competitor price moves per SKU.
SELECT today.sku, today.competitor, today.amount AS price_today, yesterday.amount AS price_yesterday
FROM v_competitor_observations today
JOIN v_competitor_observations yesterday
  ON yesterday.sku = today.sku AND yesterday.competitor = today.competitor
 AND yesterday.observation_date < today.observation_date
WHERE today.status = 'ok' AND yesterday.status = 'ok' AND today.amount <> yesterday.amount;
